#!/usr/bin/env python3
"""Call layerskipd from Python (grpcio): GetModelInfo, a greedy unary Generate,
then the same request as GenerateStream, printing the text as it arrives and
the final stats, then a question through the model's chat template (Chat and
ChatStream). Exits non-zero when the streamed text differs from the unary
text (greedy decoding must give the same tokens) or the last chunk lacks
finish_reason/stats. The layerskip.v1 stubs must be on PYTHONPATH: see
../README.md."""
import argparse
import sys

import grpc

from layerskip.v1 import layerskip_pb2 as pb
from layerskip.v1 import layerskip_pb2_grpc as pb_grpc

TIMEOUT_S = 120  # per call, so a stuck daemon cannot hang the example


def run(server, token, prompt):
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(server) as channel:
        stub = pb_grpc.LayerSkipStub(channel)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=metadata, timeout=TIMEOUT_S)
        print(f"model: {info.name} ({info.architecture}, {info.layers} layers, "
              f"context {info.context}, default strategy {info.default_strategy})")

        # No SamplingParams: greedy decoding, so unary and stream must agree.
        request = pb.GenerateRequest(prompt=prompt, max_tokens=16)
        unary = stub.Generate(request, metadata=metadata, timeout=TIMEOUT_S)
        print(f"unary:  {unary.text!r}")

        print("stream: ", end="", flush=True)
        streamed, last = [], None
        for chunk in stub.GenerateStream(request, metadata=metadata, timeout=TIMEOUT_S):
            print(chunk.text, end="", flush=True)
            streamed.append(chunk.text)
            last = chunk
        print()

    if last is None or last.finish_reason == pb.FINISH_REASON_UNSPECIFIED or not last.HasField("stats"):
        raise SystemExit("error: the stream's last chunk has no finish_reason or no stats "
                         "(the daemon must send both)")
    s = last.stats
    finish = pb.FinishReason.Name(last.finish_reason).removeprefix("FINISH_REASON_")
    print(f"stats: finish={finish} prompt_tokens={s.prompt_tokens} generated_tokens={s.generated_tokens} "
          f"strategy={s.strategy} tokens_per_second={s.tokens_per_second:.1f} "
          f"time_to_first_token_ms={s.time_to_first_token_ms:.1f} acceptance_rate={s.acceptance_rate:.2f}")
    if "".join(streamed) != unary.text:
        raise SystemExit(f"error: streamed text {''.join(streamed)!r} differs from unary text "
                         f"{unary.text!r} for the same greedy request")
    print("ok: streamed text equals unary text")
    chat(server, metadata)


def chat(server, metadata):
    """a conversation through the model's chat template: Chat, then the same as ChatStream"""
    request = pb.ChatRequest(
        messages=[pb.ChatMessage(role="system", content="You are a helpful assistant."),
                  pb.ChatMessage(role="user", content="What is the capital of France?")],
        options=pb.GenerateRequest(max_tokens=24))
    with grpc.insecure_channel(server) as channel:
        stub = pb_grpc.LayerSkipStub(channel)
        unary = stub.Chat(request, metadata=metadata, timeout=TIMEOUT_S)
        print(f"chat:   {unary.text!r}")
        streamed = "".join(c.text for c in stub.ChatStream(request, metadata=metadata, timeout=TIMEOUT_S))
    print(f"chat stream: {streamed}")
    if streamed != unary.text:
        raise SystemExit(f"error: ChatStream text {streamed!r} differs from Chat text {unary.text!r}")
    print("ok: chat stream equals unary chat")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="daemon address: host:port or unix:/path")
    parser.add_argument("--token", help="bearer token (the one in the daemon's --auth-token-file)")
    parser.add_argument("--prompt", default="The capital of France is", help="prompt text")
    args = parser.parse_args()
    try:
        run(args.server, args.token, args.prompt)
    except grpc.RpcError as e:
        hint = " (is layerskipd running there?)" if e.code() == grpc.StatusCode.UNAVAILABLE else ""
        sys.exit(f"error: {e.code().name} from {args.server}{hint}: {e.details()}")


if __name__ == "__main__":
    main()
