// The TorchKit module.
