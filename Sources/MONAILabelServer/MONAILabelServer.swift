// The MONAILabelServer module.
