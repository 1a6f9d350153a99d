import Foundation
import Testing
@testable import MONAILabel
@testable import MONAILabelCore
import TorchKit

/// One model worker group per device: which worker a request gets (`WorkerPoolState.claim` over an injected
/// device list; the server's list comes from the backend, `DeviceRouting.backendGroups`).
@Suite(.tags(.unit)) struct DeviceRoutingTests {
    /// `workers` started workers per device of `devices`.
    func running(_ workers: Int, devices: [String]) -> WorkerPoolState {
        var s = WorkerPoolState(workers: workers, devices: devices)
        for slot in s.slotsToStart(now: 0) { s.started(slot, pid: Int32(100 + slot)) }
        return s
    }

    @Test func routing_groups_oneCpuGroupWithoutGPUsElseOnePerGPU() {
        #expect(DeviceRouting.groups(cudaDevices: 0) == ["cpu"])
        #expect(DeviceRouting.groups(cudaDevices: 1) == ["cuda:0"])
        #expect(DeviceRouting.groups(cudaDevices: 3) == ["cuda:0", "cuda:1", "cuda:2"])
    }

    @Test func routing_twoGPUs_startsInferWorkersPerDevice() {
        var s = WorkerPoolState(workers: 2, devices: ["cuda:0", "cuda:1"])
        #expect(s.slots.map(\.device) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"])
        #expect(s.slotsToStart(now: 0) == [0, 1, 2, 3])
        #expect(s.devices == ["cuda:0", "cuda:1"])
    }

    @Test func routing_cpuOnlyHost_keepsOneGroupAsBefore() {
        let s = WorkerPoolState(workers: 3)
        #expect(s.slots.map(\.device) == ["cpu", "cpu", "cpu"])
        #expect(WorkerPoolState(workers: 2, devices: []).slots.map(\.device) == ["cpu", "cpu"])
    }

    @Test func routing_requestNamingADevice_runsOnThatDevicesWorker() {
        var s = running(1, devices: ["cuda:0", "cuda:1"])
        let a = s.enqueue(model: "m", device: "cuda:1", now: 0)
        #expect(s.claim(a) == 1)
        #expect(s.slots[1].device == "cuda:1")
        // The other device is idle, but this request asked for the busy one: it waits.
        let b = s.enqueue(model: "m", device: "cuda:1", now: 1)
        #expect(s.claim(b) == nil)
        s.finished(1, model: "m")
        #expect(s.claim(b) == 1)
    }

    @Test func routing_unnamedRequests_goToTheLeastLoadedDevice() {
        var s = running(2, devices: ["cuda:0", "cuda:1"])
        let ids = (0..<4).map { s.enqueue(model: "m", now: Double($0)) }
        // Alternates between the devices: each pick goes where fewer workers are busy.
        let slots = ids.map { s.claim($0) }
        #expect(slots.map { $0.map { s.slots[$0].device } } == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"])
        s.finished(2, model: "m")
        s.finished(3, model: "m")
        // cuda:1 is idle now, cuda:0 still has two busy workers.
        let next = s.enqueue(model: "m", now: 5)
        #expect(s.claim(next).map { s.slots[$0].device } == "cuda:1")
    }

    @Test func routing_requestWaitingForABusyDevice_doesNotHoldBackOneAnotherDeviceCanServe() {
        var s = running(1, devices: ["cuda:0", "cuda:1"])
        let first = s.enqueue(model: "m", device: "cuda:0", now: 0)
        #expect(s.claim(first) == 0)
        let pinned = s.enqueue(model: "m", device: "cuda:0", now: 1)
        let any = s.enqueue(model: "m", now: 2)
        #expect(s.claim(pinned) == nil)
        #expect(s.claim(any) == 1)
        #expect(s.position(of: pinned) == 1)
    }

    @Test func routing_earlierRequest_picksItsDeviceBeforeALaterOne() {
        var s = running(1, devices: ["cuda:0", "cuda:1"])
        let busy = s.enqueue(model: "m", device: "cuda:0", now: 0)
        #expect(s.claim(busy) == 0)
        // Only cuda:1 is idle: the request ahead (pinned to it) gets it, the later one (any device) waits.
        let pinned = s.enqueue(model: "m", device: "cuda:1", now: 1)
        let any = s.enqueue(model: "m", now: 2)
        #expect(s.claim(any) == nil)
        #expect(s.claim(pinned) == 1)
        #expect(s.claim(any) == nil)
        s.finished(0, model: "m")
        #expect(s.claim(any) == 0)
    }

    @Test func routing_deviceWithoutAGroup_pinsNothing() {
        var s = running(1, devices: ["cuda:0", "cuda:1"])
        // `cpu` on a GPU host: any worker places the work on the CPU itself.
        let a = s.enqueue(model: "m", device: "cpu", now: 0)
        #expect(s.queue.first?.device == nil)
        #expect(s.claim(a) == 0)
    }

    @Test func pinned_bareCudaOrNothing_leavesTheChoiceToTheRouter() throws {
        #expect(try DeviceRouting.pinned(nil) == nil)
        #expect(try DeviceRouting.pinned(.null) == nil)
        #expect(try DeviceRouting.pinned("cuda") == nil)
        #expect(try DeviceRouting.pinned(["cuda"]) == nil)
        #expect(try DeviceRouting.pinned("cpu") == .cpu)
        #expect(try DeviceRouting.pinned(["cpu", "cuda"]) == .cpu)
        let e = #expect(throws: MONAILabelError.self) { try DeviceRouting.pinned("cuda:4096") }
        #expect(e?.kind == .invalidInput)
        #expect(e?.message.hasPrefix("device 'cuda:4096'") == true)
    }
}
