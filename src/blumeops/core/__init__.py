"""Types below everything: resources, plans, health words, job runs, runtime specs and
schedules. Pure data and pure functions; every other package may use them, they use none."""
