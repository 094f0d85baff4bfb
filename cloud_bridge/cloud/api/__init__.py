"""The cloud evidence API (`edgegw serve -c cloud.yaml`): thin routes over the evidence builder."""
