"""The edge agent's OEE tracking: state and counter observers (`tracker`), the local history they keep
(`history`) and the edge API's OEE over it (`local`)."""
