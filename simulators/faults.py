"""What a simulated device on a line does wrong: the faults a Modbus unit and a DL/T 645 meter share."""

from __future__ import annotations

from dataclasses import dataclass

from edge_config.scenario import Fault


@dataclass
class LineFaults:
    """Faults of one device that answers requests (change them while the server runs).

    `apply(Fault)` and `lift(kind)` take the scenario notation (`offline`, `slow=2s`, `corrupt=0.3`,
    `exception=…`); what an exception refuses is the device's business (`refuse_text`)."""

    silent: bool = False  # answers nothing: a dead device
    delay: float = 0.0  # seconds before answering
    corrupt: float = 0.0  # share of answers garbled on the wire

    def apply(self, fault: Fault) -> None:
        if fault.kind == "offline":
            self.silent = True
        elif fault.kind == "slow":
            self.delay = fault.seconds
        elif fault.kind == "corrupt":
            self.corrupt = fault.share
        elif fault.kind == "exception":
            self.refuse_text(fault.arg)

    def lift(self, kind: str) -> None:
        if kind == "offline":
            self.silent = False
        elif kind == "slow":
            self.delay = 0.0
        elif kind == "corrupt":
            self.corrupt = 0.0
        elif kind == "exception":
            self.clear_refusals()

    def refuse_text(self, arg: str) -> None:
        raise NotImplementedError

    def clear_refusals(self) -> None:
        raise NotImplementedError
