// The MONAILabel module.
