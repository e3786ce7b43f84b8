"""The server-side cases of gRPC's interop test descriptions, run by grpcio (the C-core
stack) against a plugrpc host serving the interop plugin.

Usage: interop_client.py --target HOST:PORT --stubs DIR
Prints "ok <case>" per case passed; exits 1 at the first failure, naming it.
grpcio compresses per call, not per message, so client_compressed_streaming sends both
messages compressed; the mixed case is made on the wire in tests/e2e/interop.rs.
"""

import argparse
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--stubs", required=True)
    args = parser.parse_args()
    import os

    import grpc
    # The stubs live under grpc/testing/, as the protos' own paths say: grpcio's package
    # has no testing module, so the stubs' folder extends it.
    grpc.__path__.append(os.path.join(args.stubs, "grpc"))
    from grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc

    channel = grpc.insecure_channel(args.target)
    stub = test_pb2_grpc.TestServiceStub(channel)
    m = messages_pb2

    def payload(size):
        return m.Payload(body=b"\0" * size)

    def expect_code(code, call):
        try:
            call()
        except grpc.RpcError as error:
            if error.code() != code:
                raise AssertionError(f"{error.code()} {error.details()!r}, not {code}")
            return error
        raise AssertionError(f"succeeded, not {code}")

    def empty_unary():
        assert stub.EmptyCall(empty_pb2.Empty()) == empty_pb2.Empty()

    def large_unary():
        reply = stub.UnaryCall(m.SimpleRequest(response_size=314159, payload=payload(271828)))
        assert len(reply.payload.body) == 314159

    def client_streaming():
        requests = (m.StreamingInputCallRequest(payload=payload(s)) for s in (27182, 8, 1828, 45904))
        assert stub.StreamingInputCall(requests).aggregated_payload_size == 74922

    def server_streaming():
        sizes = [31415, 9, 2653, 58979]
        request = m.StreamingOutputCallRequest(
            response_parameters=[m.ResponseParameters(size=s) for s in sizes])
        assert [len(r.payload.body) for r in stub.StreamingOutputCall(request)] == sizes

    def ping_pong():
        import queue
        pending = queue.Queue()
        replies = stub.FullDuplexCall(iter(pending.get, None))
        for request_size, response_size in ((27182, 31415), (8, 9), (1828, 2653), (45904, 58979)):
            pending.put(m.StreamingOutputCallRequest(
                response_parameters=[m.ResponseParameters(size=response_size)],
                payload=payload(request_size)))
            assert len(next(replies).payload.body) == response_size
        pending.put(None)
        assert list(replies) == []

    def empty_stream():
        assert list(stub.FullDuplexCall(iter([]))) == []

    def cancel_after_begin():
        import queue
        never = queue.Queue()
        future = stub.StreamingInputCall.future(iter(never.get, None))
        future.cancel()
        assert future.cancelled()

    def cancel_after_first_response():
        import queue
        pending = queue.Queue()
        replies = stub.FullDuplexCall(iter(pending.get, None))
        pending.put(m.StreamingOutputCallRequest(
            response_parameters=[m.ResponseParameters(size=31415)], payload=payload(27182)))
        assert len(next(replies).payload.body) == 31415
        replies.cancel()
        expect_code(grpc.StatusCode.CANCELLED, lambda: next(replies))
        pending.put(None)

    def timeout_on_sleeping_server():
        import queue
        pending = queue.Queue()
        pending.put(m.StreamingOutputCallRequest(payload=payload(27182)))
        replies = stub.FullDuplexCall(iter(pending.get, None), timeout=0.001)
        expect_code(grpc.StatusCode.DEADLINE_EXCEEDED, lambda: list(replies))
        pending.put(None)

    def status_code_and_message(message="test status message"):
        status = m.EchoStatus(code=2, message=message)
        error = expect_code(grpc.StatusCode.UNKNOWN,
                            lambda: stub.UnaryCall(m.SimpleRequest(response_status=status)))
        assert error.details() == message, repr(error.details())
        replies = stub.FullDuplexCall(iter([m.StreamingOutputCallRequest(response_status=status)]))
        error = expect_code(grpc.StatusCode.UNKNOWN, lambda: list(replies))
        assert error.details() == message, repr(error.details())

    def special_status_message():
        status_code_and_message("\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n")

    def custom_metadata():
        metadata = (("x-grpc-test-echo-initial", "test_initial_metadata_value"),
                    ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab"))
        reply, call = stub.UnaryCall.with_call(
            m.SimpleRequest(response_size=314159, payload=payload(271828)), metadata=metadata)
        assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in call.initial_metadata()
        assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in call.trailing_metadata()
        replies = stub.FullDuplexCall(iter([m.StreamingOutputCallRequest(
            response_parameters=[m.ResponseParameters(size=314159)], payload=payload(271828))]),
            metadata=metadata)
        assert [len(r.payload.body) for r in replies] == [314159]
        assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in replies.initial_metadata()
        assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in replies.trailing_metadata()

    def unimplemented_method():
        expect_code(grpc.StatusCode.UNIMPLEMENTED, lambda: stub.UnimplementedCall(empty_pb2.Empty()))

    def unimplemented_service():
        other = test_pb2_grpc.UnimplementedServiceStub(channel)
        expect_code(grpc.StatusCode.UNIMPLEMENTED, lambda: other.UnimplementedCall(empty_pb2.Empty()))

    def client_compressed_unary():
        request = m.SimpleRequest(expect_compressed=m.BoolValue(value=True),
                                  response_size=314159, payload=payload(271828))
        expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: stub.UnaryCall(request))
        reply = stub.UnaryCall(request, compression=grpc.Compression.Gzip)
        assert len(reply.payload.body) == 314159
        plain = m.SimpleRequest(expect_compressed=m.BoolValue(value=False),
                                response_size=314159, payload=payload(271828))
        assert len(stub.UnaryCall(plain).payload.body) == 314159

    def client_compressed_streaming():
        requests = [m.StreamingInputCallRequest(
            payload=payload(s), expect_compressed=m.BoolValue(value=True)) for s in (27182, 45904)]
        reply = stub.StreamingInputCall(iter(requests), compression=grpc.Compression.Gzip)
        assert reply.aggregated_payload_size == 73086

    def server_compressed_unary():
        for compressed in (True, False):
            reply = stub.UnaryCall(m.SimpleRequest(
                response_compressed=m.BoolValue(value=compressed),
                response_size=314159, payload=payload(271828)))
            assert len(reply.payload.body) == 314159

    def server_compressed_streaming():
        request = m.StreamingOutputCallRequest(response_parameters=[
            m.ResponseParameters(compressed=m.BoolValue(value=True), size=31415),
            m.ResponseParameters(compressed=m.BoolValue(value=False), size=92653)])
        assert [len(r.payload.body) for r in stub.StreamingOutputCall(request)] == [31415, 92653]

    cases = [empty_unary, large_unary, client_streaming, server_streaming, ping_pong,
             empty_stream, cancel_after_begin, cancel_after_first_response,
             timeout_on_sleeping_server, status_code_and_message, special_status_message,
             custom_metadata, unimplemented_method, unimplemented_service,
             client_compressed_unary, client_compressed_streaming, server_compressed_unary,
             server_compressed_streaming]
    for case in cases:
        started = time.monotonic()
        try:
            case()
        except Exception as error:  # noqa: BLE001 - every failure names its case
            print(f"FAILED {case.__name__}: {type(error).__name__}: {error}")
            return 1
        print(f"ok {case.__name__} ({(time.monotonic() - started) * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
