"""The figures of `ticketlab report`, a module per figure family (curve, cost, transfer, tickets, earlybert), their
shared styling (style) and the drawing of every figure a report's results allow (draw).

Each figure is drawn on a bare matplotlib Figure (no pyplot state, no GUI backend) and saved as PNG.
"""
