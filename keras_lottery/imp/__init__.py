"""Iterative magnitude pruning: the callback, its run state and checks, round plans and logs, schedules (tfmot interop), multi-worker runs."""
