"""The dashboard: server-rendered pages of the lab, live updates and the three actions.

Mounted beside the API on the same server, behind the same Host check and body limits.
"""
