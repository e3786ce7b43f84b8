// The Connect project's own Node clients against a plugrpc host: the users plugin over
// the Connect protocol (JSON and binary) or gRPC-Web, every call shape the transport
// allows. Message types come from a FileDescriptorSet (`buf build`), not generated code.
//
// Usage: node connect_client.mjs <baseUrl> <connect|connect-json|grpcweb> <http1|http2> <fds.binpb>
// Prints one line per call; exits 1 on the first unexpected answer.

import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, toJson, create } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

const [baseUrl, protocol, version, fdsPath] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(fdsPath)));
const service = registry.getService("user.v1.UserService");
const httpVersion = version === "http2" ? "2" : "1.1";
const transport =
  protocol === "grpcweb"
    ? createGrpcWebTransport({ baseUrl, httpVersion })
    : createConnectTransport({ baseUrl, httpVersion, useBinaryFormat: protocol === "connect" });
const client = createClient(service, transport);
const schema = (name) => registry.getMessage(name);
const json = (name, message) => JSON.stringify(toJson(schema(name), message));

const user = await client.getUser({ id: 7n }, { headers: { "x-user": "ada" } });
console.log("GetUser", json("user.v1.User", user));
try {
  await client.getUser({ id: 0n });
  console.log("GetUser(0) succeeded");
  process.exit(1);
} catch (error) {
  const e = ConnectError.from(error);
  console.log("GetUser(0)", Code[e.code], e.rawMessage, e.details.map((d) => d.desc?.typeName ?? d.type).join(","));
}
const names = [];
for await (const listed of client.listUsers({ limit: 3 })) {
  names.push(listed.name);
}
console.log("ListUsers", names.join(","));
if (httpVersion === "2") {
  async function* creations() {
    for (const name of ["a", "b", "c"]) {
      yield create(schema("user.v1.CreateUserRequest"), { name, email: `${name}@example.com` });
    }
  }
  const created = await client.createUsers(creations());
  console.log("CreateUsers", json("user.v1.CreateUsersResponse", created));
  async function* chat() {
    for (const text of ["hello", "bye"]) {
      yield create(schema("user.v1.ChatMessage"), { user: "ada", text });
    }
  }
  const said = [];
  for await (const message of client.chat(chat())) {
    said.push(message.text);
  }
  console.log("Chat", said.join(" | "));
}
