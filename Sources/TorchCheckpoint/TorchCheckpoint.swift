// The TorchCheckpoint module.
