"""gRPC's own Python clients for the host's built-in services: grpcio-reflection's
descriptor database (reflection v1alpha, as grpcio asks it) and grpcio-health-checking.

Usage: builtin_client.py --target HOST:PORT reflection | health
reflection: prints the services listed, then one line per method of user.v1.UserService
  and the fields of user.v1.User, as resolved through reflection alone.
health: prints Check and List answers, then watches user.v1.UserService and prints each
  status as it comes ("watch SERVING", ...), until it turns SERVICE_UNKNOWN.
"""

import argparse
import sys


def reflection(channel):
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    database = ProtoReflectionDescriptorDatabase(channel)
    print("services", " ".join(sorted(database.get_services())))
    pool = DescriptorPool(database)
    service = pool.FindServiceByName("user.v1.UserService")
    for method in service.methods:
        streaming = ("stream " if method.client_streaming else "") + (
            "-> stream" if method.server_streaming else "->")
        print("method", method.name, method.input_type.full_name, streaming,
              method.output_type.full_name)
    user = pool.FindMessageTypeByName("user.v1.User")
    print("fields", " ".join(field.name for field in user.fields))


def health(channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    names = health_pb2.HealthCheckResponse.ServingStatus.Name
    for service in ("", "user.v1.UserService"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service))
        print(f"check {service or '-'} {names(reply.status)}")
    listed = stub.List(health_pb2.HealthListRequest())
    print("list", " ".join(sorted(name or "-" for name in listed.statuses)))
    for reply in stub.Watch(health_pb2.HealthCheckRequest(service="user.v1.UserService"),
                            timeout=60):
        print("watch", names(reply.status), flush=True)
        if reply.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN:
            return


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("mode", choices=["reflection", "health"])
    args = parser.parse_args()
    import grpc

    with grpc.insecure_channel(args.target) as channel:
        {"reflection": reflection, "health": health}[args.mode](channel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
