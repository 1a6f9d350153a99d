// The server's API speaks HTTPCore's types (headers, multipart, percent-encoding); users of the server get them
// with `import HTTPServer` alone.
@_exported import HTTPCore
