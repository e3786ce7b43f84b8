"""Calls all four methods of the users plugin on a running plugrpc host.

Stubs come from proto/ with grpcio-tools (`make python-client` writes them to gen/).
"""

import argparse
import pathlib
import queue
import sys

import grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port of plugrpc")
    parser.add_argument("--stubs", default=str(pathlib.Path(__file__).parent / "gen"),
                        help="folder holding the generated user/v1 stubs")
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)
    from user.v1 import user_service_pb2 as pb
    from user.v1 import user_service_pb2_grpc as rpc

    with grpc.insecure_channel(args.target) as channel:
        users = rpc.UserServiceStub(channel)

        user = users.GetUser(pb.GetUserRequest(id=7), timeout=10)
        print(f"GetUser(7) -> id={user.id} name={user.name} email={user.email}")

        try:
            users.GetUser(pb.GetUserRequest(id=0), timeout=10)
        except grpc.RpcError as error:
            print(f"GetUser(0) -> {error.code().name}: {error.details()}")

        listed = [u.name for u in users.ListUsers(pb.ListUsersRequest(limit=3), timeout=10)]
        print(f"ListUsers(3) -> {', '.join(listed)}")

        new = (pb.CreateUserRequest(name=f"n{i}", email=f"n{i}@example.com") for i in range(3))
        print(f"CreateUsers(3) -> count={users.CreateUsers(new, timeout=10).count}")

        # Send each chat line only after the reply to the previous one arrived: the
        # plugin answers as messages come, not after the client finishes.
        outbox: "queue.Queue[object]" = queue.Queue()
        lines = ["hello", "how are you?", "bye"]
        outbox.put(pb.ChatMessage(user="ada", text=lines[0]))

        def requests():
            while (message := outbox.get()) is not None:
                yield message

        replies = []
        for reply in users.Chat(requests(), timeout=10):
            replies.append(reply.text)
            if len(replies) < len(lines):
                outbox.put(pb.ChatMessage(user="ada", text=lines[len(replies)]))
            else:
                outbox.put(None)
        print(f"Chat -> {' | '.join(replies)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
