"""Training: the loop, its objective (losses and their weights), optimizer and schedule, the run's
devices and folder, monitor, checkpoints, crops, discriminators, balancer, overfit check."""
