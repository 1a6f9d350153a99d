import CNifti
import Foundation

/// A zlib file handle (reads plain files transparently), owned by exactly one Swift object.
final class GzipFile: @unchecked Sendable {
    private let handle: gzFile
    let path: String

    init(path: String, mode: String) throws {
        guard let h = gzopen(path, mode) else {
            throw ImagingError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        handle = h
        self.path = path
        // A large buffer lets zlib inflate straight into our destination instead of many small copies.
        gzbuffer(h, 1 << 18)
    }

    deinit { gzclose(handle) }

    /// Reads exactly `count` bytes, or throws naming what went wrong (truncated file, corrupt stream).
    func readExactly(into buffer: UnsafeMutableRawPointer, count: Int) throws {
        var done = 0
        while done < count {
            let chunk = UInt32(min(count - done, 1 << 30))
            let n = gzread(handle, buffer + done, chunk)
            if n < 0 { throw ImagingError("\(path): corrupt compressed data (\(lastError()))") }
            if n == 0 {
                let detail = lastError()
                throw ImagingError(
                    "\(path): file is truncated: expected \(count) bytes of voxel data, got \(done)"
                        + (detail.isEmpty ? "" : " (\(detail))"))
            }
            done += Int(n)
        }
    }

    /// Reads up to `count` bytes; returns how many were read.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        var done = 0
        while done < count {
            let n = gzread(handle, buffer + done, UInt32(min(count - done, 1 << 30)))
            if n < 0 { throw ImagingError("\(path): corrupt compressed data (\(lastError()))") }
            if n == 0 { break }
            done += Int(n)
        }
        return done
    }

    /// Skips `count` bytes forward.
    func skip(_ count: Int) throws {
        guard count > 0 else { return }
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: min(count, 1 << 16), alignment: 16)
        defer { scratch.deallocate() }
        var left = count
        while left > 0 {
            let n = min(left, 1 << 16)
            try readExactly(into: scratch, count: n)
            left -= n
        }
    }

    private func lastError() -> String {
        var code: Int32 = 0
        guard let msg = gzerror(handle, &code) else { return "" }
        return code == Z_OK ? "" : String(cString: msg)
    }
}

/// A file being written, reporting every failure.
final class OutputFile {
    private let handle: FileHandle
    let path: String

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil),
            let h = FileHandle(forWritingAtPath: path)
        else { throw ImagingError("cannot create \(path)") }
        handle = h
        self.path = path
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let data = Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: bytes.count, deallocator: .none)
        do { try handle.write(contentsOf: data) } catch {
            throw ImagingError("\(path): write failed (\(error.localizedDescription))")
        }
    }

    func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    func close() throws {
        do { try handle.close() } catch { throw ImagingError("\(path): close failed (\(error.localizedDescription))") }
    }
}

enum FileBytes {
    /// The size of the file that reading `path` opens, in bytes. stat(2), not lstat(2): data is read through
    /// symbolic links (a datastore's linked images, an upload linked under its extension), so the size bound
    /// must be the target's; a link's own size is the length of the path it holds.
    static func size(_ path: String) throws -> Int {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw ImagingError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw ImagingError("\(path) is a directory, not an image file")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw ImagingError("\(path) is not a regular file")
        }
        return Int(st.st_size)
    }

    /// Whether the file starts with the gzip magic bytes.
    static func isGzip(_ path: String) -> Bool {
        guard let fh = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? fh.close() }
        let head = fh.readData(ofLength: 2)
        return head.count == 2 && head[head.startIndex] == 0x1f && head[head.startIndex + 1] == 0x8b
    }

    /// Deflate cannot expand data by more than about 1032:1; a header claiming more voxels than that from the
    /// compressed size is lying, which lets us refuse it before allocating anything.
    static func maxInflatedSize(compressedSize: Int) -> Int {
        compressedSize.multipliedReportingOverflow(by: 1032).overflow
            ? Int.max : compressedSize * 1032 + (1 << 16)
    }
}

/// Whole-buffer zlib helpers for formats that embed compressed payloads (NRRD).
enum Zlib {
    /// gzip-compresses `data` (level 1, as nibabel writes).
    static func gzip(_ data: UnsafeRawBufferPointer, level: Int32 = 1) throws -> [UInt8] {
        var stream = z_stream()
        // windowBits 15 + 16 selects the gzip wrapper.
        var rc = deflateInit2_(
            &stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw ImagingError("zlib deflateInit failed (\(rc))") }
        defer { deflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(data.count))) + 64)
        var produced = 0
        try out.withUnsafeMutableBytes { ob in
            stream.next_in = UnsafeMutablePointer(mutating: data.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = UInt32(data.count)
            stream.next_out = ob.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = UInt32(ob.count)
            rc = deflate(&stream, Z_FINISH)
            guard rc == Z_STREAM_END else { throw ImagingError("zlib deflate failed (\(rc))") }
            produced = Int(stream.total_out)
        }
        out.removeSubrange(produced...)
        return out
    }

    /// gzip-compresses `data` as independent members of `chunk` bytes, in parallel; concatenated they form one
    /// valid gzip file.
    static func gzipMembers(_ data: UnsafeRawBufferPointer, chunk: Int = 4 << 20, level: Int32 = 1) throws -> [[UInt8]] {
        guard data.count > 0 else { return [] }
        let n = (data.count + chunk - 1) / chunk
        var members = [[UInt8]?](repeating: nil, count: n)
        members.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            Parallel.forChunks(count: n, minChunk: 1) { lo, hi in
                for i in lo..<hi {
                    let part = UnsafeRawBufferPointer(rebasing: data[(i * chunk)..<min((i + 1) * chunk, data.count)])
                    o[i] = try? gzip(part, level: level)
                }
            }
        }
        return try members.map { m in
            guard let m else { throw ImagingError("zlib compression failed") }
            return m
        }
    }

    /// Inflates a gzip or zlib stream into exactly `expected` bytes at `dest`.
    static func gunzip(_ data: UnsafeRawBufferPointer, into dest: UnsafeMutableRawPointer, expected: Int) throws {
        var stream = z_stream()
        // 15 + 32: detect gzip or zlib headers automatically.
        var rc = inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw ImagingError("zlib inflateInit failed (\(rc))") }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: data.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = UInt32(clamping: data.count)
        var done = 0
        while done < expected {
            stream.next_out = (dest + done).assumingMemoryBound(to: Bytef.self)
            let chunk = min(expected - done, 1 << 30)
            stream.avail_out = UInt32(chunk)
            rc = inflate(&stream, Z_NO_FLUSH)
            let wrote = chunk - Int(stream.avail_out)
            done += wrote
            if rc == Z_STREAM_END { break }
            if rc != Z_OK { throw ImagingError("corrupt compressed data (zlib error \(rc))") }
            if wrote == 0 && stream.avail_in == 0 { break }
        }
        if done < expected {
            throw ImagingError("compressed data is truncated: expected \(expected) bytes, got \(done)")
        }
    }
}
