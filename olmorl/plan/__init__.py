"""`olmorl plan`: whether a recipe fits a cluster, before any actor starts: where each actor goes
and what each GPU must hold."""
