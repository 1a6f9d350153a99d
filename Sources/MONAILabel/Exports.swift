// The torch-free core (datastore, sessions, JSON, files) is part of the domain's public surface.
@_exported import MONAILabelCore
