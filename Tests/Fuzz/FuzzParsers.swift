// libFuzzer entry point over the request parser and the multipart parser (built by scripts/fuzz.sh with the
// parser sources; not part of the package). The first input byte picks the parser and how the rest is split
// into reads, so split-point bugs are explored too. Invariant violations trap.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzParsers(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let selector = data[0]
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let split = Int(selector >> 1) % (input.count + 1)
    if selector & 1 == 0 {
        fuzzRequestParser(input, split: split)
    } else {
        fuzzMultipartParser(input, split: split)
    }
    return 0
}

/// Feeds `input` as two reads (the first `split` bytes, then all), checking the consumption contract.
private func fuzzRequestParser(_ input: UnsafeRawBufferPointer, split: Int) {
    var limits = HTTPLimits()
    limits.maxHeaderBytes = 4096
    limits.maxURILength = 1024
    limits.maxHeaderCount = 32
    limits.maxBodyBytes = 1 << 20
    var parser = HTTPRequestParser(limits: limits)
    var start = 0
    for available in [split, input.count] {
        var steps = 0
        while true {
            steps += 1
            precondition(steps < 100_000, "parser does not progress")
            let window = UnsafeRawBufferPointer(rebasing: input[start..<available])
            let (action, consumed) = parser.next(window)
            precondition(consumed >= 0 && consumed <= window.count, "consumed out of range")
            start += consumed
            switch action {
            case .needMore:
                if consumed == 0 { break }
                continue
            case .head(let head):
                if case .length(let n) = head.framing { precondition(n <= limits.maxBodyBytes) }
                continue
            case .body(let r):
                precondition(r.lowerBound >= 0 && r.upperBound <= window.count && !r.isEmpty, "body range out of buffer")
                continue
            case .end:
                continue
            case .error(let e):
                precondition(e.status.code >= 400 && e.status.code < 600)
                return
            }
            break
        }
    }
}

private func fuzzMultipartParser(_ input: UnsafeRawBufferPointer, split: Int) {
    guard var parser = MultipartParser(boundary: "----------lImIt_of_THE_fIle_eW_$") else { preconditionFailure() }
    var start = 0
    var inPart = false
    for (available, isFinal) in [(split, false), (input.count, true)] {
        var steps = 0
        loop: while true {
            steps += 1
            precondition(steps < 1_000_000, "multipart parser does not progress")
            let window = UnsafeRawBufferPointer(rebasing: input[start..<available])
            let (action, consumed) = parser.next(window, isFinal: isFinal)
            precondition(consumed >= 0 && consumed <= window.count, "consumed out of range")
            start += consumed
            switch action {
            case .needMore:
                if consumed == 0 { break loop }
            case .partHead:
                precondition(!inPart, "part head inside a part")
                inPart = true
            case .partData(let r):
                precondition(inPart && !r.isEmpty && r.upperBound <= window.count, "part data out of buffer")
            case .partEnd:
                precondition(inPart, "part end outside a part")
                inPart = false
            case .end, .error:
                return
            }
        }
    }
}
