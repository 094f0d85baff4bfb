"""Evidence for the MIIT SME digital level evaluation: the figures (`build`), the pack (`export`), the
printable report (`report`) and the periods they cover (`period`)."""
