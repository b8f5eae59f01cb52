"""nets: neural state-space models of circuits, trained on what `nodal` generates."""
