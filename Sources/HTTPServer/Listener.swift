import CHTTPSys
import Foundation

/// Binding listening sockets.
enum Listener {
    static func bind(host: String, port: Int) throws -> (fds: [Int32], addresses: [String], port: Int) {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var fds: [Int32] = []
        var addresses: [String] = []
        var chosenPort = port
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw HTTPServerError("Cannot resolve host \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var lastError = ""
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let family = a.pointee.ai_family
            let fd = chttp_socket(family)
            if fd < 0 { lastError = String(cString: strerror(errno)); continue }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if family == AF_INET6, host != "::" {
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            // All addresses of one name share the port chosen for the first when the caller asked for 0.
            if chosenPort != port || port == 0 && !fds.isEmpty {
                let p = UInt16(chosenPort).bigEndian
                if family == AF_INET {
                    a.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = p }
                } else if family == AF_INET6 {
                    a.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port = p }
                }
            }
            if Glibc.bind(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) != 0 || listen(fd, 1024) != 0 {
                lastError = String(cString: strerror(errno))
                close(fd)
                continue
            }
            chosenPort = Int(chttp_local_port(fd))
            var text = [CChar](repeating: 0, count: 64)
            text.withUnsafeMutableBufferPointer { chttp_format_address(a.pointee.ai_addr, $0.baseAddress, 64) }
            var addr = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            if let colon = addr.lastIndex(of: ":") { addr = String(addr[..<colon]) + ":\(chosenPort)" }
            addresses.append(addr)
            fds.append(fd)
        }
        guard !fds.isEmpty else { throw HTTPServerError("Cannot listen on \(host):\(port): \(lastError)") }
        return (fds, addresses, chosenPort)
    }
}
