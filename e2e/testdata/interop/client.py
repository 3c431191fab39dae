"""A proxyless xDS client on gRPC C-core (Python grpcio), driven over stdin.

Usage: GRPC_XDS_BOOTSTRAP=bootstrap.json python3 client.py xds:///<target>

It prints one JSON line naming itself, then answers each stdin line
{"n": N, "md": {"key": "value"}} with one JSON line:
{"tracks": {"<hostname>": count}, "versions": {"<server_id>": count},
 "errors": {"<code>": count}, "failures": {"<code>: <details>": count},
 "messages": [...]}
after N sequential grpc.testing.TestService/UnaryCall RPCs carrying the
metadata. The response's hostname field (6) names the track (or pod) that
answered, its server_id field (4) the version (image tag), when set.
It needs no generated code: requests are empty SimpleRequests and
responses are read with a minimal protobuf decoder.
"""
import json
import sys

import grpc

METHOD = "/grpc.testing.TestService/UnaryCall"


def varint(b, i):
    shift = result = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            return result, i
        shift += 7


def string_field(b, want):
    """Returns string field number want of an encoded message, or ""."""
    i, out = 0, ""
    while i < len(b):
        key, i = varint(b, i)
        num, typ = key >> 3, key & 7
        if typ == 0:
            _, i = varint(b, i)
        elif typ == 2:
            n, i = varint(b, i)
            if num == want:
                out = b[i:i + n].decode()
            i += n
        elif typ == 1:
            i += 8
        elif typ == 5:
            i += 4
        else:
            raise ValueError("bad wire type %d" % typ)
    return out


def main():
    target = sys.argv[1]
    print(json.dumps({"client": "python grpcio (gRPC C-core)", "version": grpc.__version__}), flush=True)
    channel = grpc.insecure_channel(target)
    call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    for line in sys.stdin:
        req = json.loads(line)
        md = sorted((req.get("md") or {}).items())
        tracks, versions, errors, failures, messages = {}, {}, {}, {}, []
        for _ in range(req["n"]):
            try:
                resp = call(b"", metadata=md, timeout=10)
                host = string_field(resp, 6)
                tracks[host] = tracks.get(host, 0) + 1
                version = string_field(resp, 4)
                if version:
                    versions[version] = versions.get(version, 0) + 1
            except grpc.RpcError as e:
                code = e.code().name
                errors[code] = errors.get(code, 0) + 1
                key = "%s: %s" % (code, e.details())
                failures[key] = failures.get(key, 0) + 1
                if len(messages) < 3:
                    messages.append("%s: %s (%s)" % (code, e.details(), e.debug_error_string()))
        print(json.dumps({"tracks": tracks, "versions": versions, "errors": errors,
                          "failures": failures, "messages": messages}), flush=True)


if __name__ == "__main__":
    main()
