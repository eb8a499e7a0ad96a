"""The one training loop (Hugging Face accelerate) and what it is made of, one job a module.

batches: the batch contract and each step's data randomness (a leaf: tasks, distillation and pruning import it);
launch: the process's accelerator, precision, and what the processes of a launch agree on; hooks: the loop's
extension points; checkpoint: bit-exact resume; flops: the cost count; evaluate: predictions; loop: training;
tracking: what --log-with logs of a unit.

Nothing is imported here, so that a leaf module loads without the loop.
"""
