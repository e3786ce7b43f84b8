"""user.v1.UserService as a Python grpcio server: the benchmark suite's Python baseline.

Behaves like the `users` example plugin (users derived from their ids). Generates its
stubs from proto/ into a temporary folder, serves on 127.0.0.1:<port> (0 picks one),
prints `PORT <n>` once serving, and stops on SIGTERM or when stdin closes.

    python tests/bench/users_server.py --port 0
"""

import argparse
import concurrent.futures
import pathlib
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
CREATED_AT_SECONDS = 1_704_067_200


def generate(out: str) -> None:
    """Compiles user_service.proto to Python modules in `out`."""
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    status = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "user/v1/user_service.proto",
        ]
    )
    if status != 0:
        sys.exit(f"generating the UserService stubs failed ({status})")


def make_servicer(pb, pb_grpc):
    """The UserService implementation, over the generated modules."""

    def user(user_id):
        u = pb.User(id=user_id, name=f"user-{user_id}", email=f"user-{user_id}@example.com")
        u.created_at.seconds = CREATED_AT_SECONDS + user_id
        return u

    class Users(pb_grpc.UserServiceServicer):
        def GetUser(self, request, context):
            if request.id <= 0:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no user with id {request.id}")
            return user(request.id)

        def ListUsers(self, request, context):
            if request.limit < 0:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"limit must not be negative, got {request.limit}",
                )
            for user_id in range(1, request.limit + 1):
                yield user(user_id)

        def CreateUsers(self, request_iterator, context):
            count = 0
            for request in request_iterator:
                if not request.email:
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"user {request.name!r} has an empty email",
                    )
                count += 1
            return pb.CreateUsersResponse(count=count)

        def Chat(self, request_iterator, context):
            for message in request_iterator:
                reply = pb.ChatMessage(
                    user="users-plugin", text=f"{message.user} said: {message.text}"
                )
                if message.HasField("sent_at"):
                    reply.sent_at.CopyFrom(message.sent_at)
                yield reply

    return Users()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=16, help="thread pool size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        generate(out)
        sys.path.insert(0, out)
        from user.v1 import user_service_pb2 as pb
        from user.v1 import user_service_pb2_grpc as pb_grpc

        server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=args.workers))
        pb_grpc.add_UserServiceServicer_to_server(make_servicer(pb, pb_grpc), server)
        port = server.add_insecure_port(f"127.0.0.1:{args.port}")
        server.start()
        print(f"PORT {port}", flush=True)
        # Stops when the suite closes our stdin (or kills us).
        threading.Thread(target=lambda: (sys.stdin.read(), server.stop(0)), daemon=True).start()
        server.wait_for_termination()


if __name__ == "__main__":
    main()
