"""Calls all four methods of the users plugin on a running plugrpc host.

Stubs come from proto/ with grpcio-tools (`make python-client` writes them to gen/).
Plaintext by default; `--ca` for TLS, plus `--cert` and `--key` for mTLS, `--api-key`
to call as an API key.
"""

import argparse
import pathlib
import queue
import sys
import uuid

import grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port of plugrpc")
    parser.add_argument("--stubs", default=str(pathlib.Path(__file__).parent / "gen"),
                        help="folder holding the generated user/v1 stubs")
    parser.add_argument("--ca", help="PEM CA to trust the host's certificate by (TLS)")
    parser.add_argument("--cert", help="PEM client certificate (mTLS)")
    parser.add_argument("--key", help="PEM key of the client certificate (mTLS)")
    parser.add_argument("--api-key", help="sent as `authorization: Bearer <key>`")
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)
    from user.v1 import user_service_pb2 as pb
    from user.v1 import user_service_pb2_grpc as rpc

    def read(path):
        return pathlib.Path(path).read_bytes() if path else None

    if args.ca:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(args.key),
            certificate_chain=read(args.cert),
        )
        channel = grpc.secure_channel(args.target, credentials)
    else:
        channel = grpc.insecure_channel(args.target)
    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else None

    with channel:
        users = rpc.UserServiceStub(channel)

        # Emails are unique in the store: a run of its own for each, so the example
        # can run again against a host that kept the last run's users.
        run = uuid.uuid4().hex[:8]
        new = (pb.CreateUserRequest(name=f"n{i}", email=f"n{i}-{run}@example.com")
               for i in range(3))
        try:
            created = users.CreateUsers(new, timeout=10, metadata=metadata)
        except grpc.RpcError as error:
            print(f"CreateUsers(3) -> {error.code().name}: {error.details()}")
            return 1
        print(f"CreateUsers(3) -> count={created.count}")
        first = created.users[0].id

        user = users.GetUser(pb.GetUserRequest(id=first), timeout=10, metadata=metadata)
        print(f"GetUser(first) -> name={user.name} email={user.email.replace(run, '<run>')}")

        try:
            users.GetUser(pb.GetUserRequest(id=0), timeout=10, metadata=metadata)
        except grpc.RpcError as error:
            print(f"GetUser(0) -> {error.code().name}: {error.details()}")

        page = pb.ListUsersRequest(limit=3, after_id=first - 1)
        listed = [u.name for u in users.ListUsers(page, timeout=10, metadata=metadata)]
        print(f"ListUsers(3 from first) -> {', '.join(listed)}")

        # Send each chat line only after the reply to the previous one arrived: the
        # plugin answers as messages come, not after the client finishes.
        outbox: "queue.Queue[object]" = queue.Queue()
        lines = ["hello", "how are you?", "bye"]
        outbox.put(pb.ChatMessage(user="ada", text=lines[0]))

        def requests():
            while (message := outbox.get()) is not None:
                yield message

        replies = []
        for reply in users.Chat(requests(), timeout=10, metadata=metadata):
            replies.append(reply.text)
            if len(replies) < len(lines):
                outbox.put(pb.ChatMessage(user="ada", text=lines[len(replies)]))
            else:
                outbox.put(None)
        print(f"Chat -> {' | '.join(replies)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
