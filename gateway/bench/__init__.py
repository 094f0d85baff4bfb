"""Benchmarks behind `edgegw bench`. Speed and memory goals live here, never in timed unit tests;
every report quotes ratios against the bare-library floor measured in the same run."""
