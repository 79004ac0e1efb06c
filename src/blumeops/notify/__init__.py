"""Notifications: the controller's state changes, sent through Apprise to the targets of
the catalog's `notify:` section, without flooding and without blocking a sync."""
