// The client's API speaks HTTPCore's types (headers, multipart); users of the client get them
// with `import HTTPClient` alone.
@_exported import HTTPCore
