"""Evidence for the MIIT SME digital level evaluation: the figures (`build`), the pack (`export`) and the
printable report (`report`)."""
