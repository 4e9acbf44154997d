// Command example calls layerskipd from Go: GetModelInfo, a greedy unary
// Generate, then the same request as GenerateStream, printing the text as it
// arrives and the final stats. It exits non-zero when the streamed text
// differs from the unary text (greedy decoding must give the same tokens) or
// the last chunk lacks finish_reason/stats. Generate layerskippb/ first: see
// ../README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "layerskip/client/examples/go/layerskippb"
)

func main() {
	server := flag.String("server", "127.0.0.1:50051", "daemon address: host:port or unix:/path")
	token := flag.String("token", "", "bearer token (the one in the daemon's --auth-token-file)")
	prompt := flag.String("prompt", "The capital of France is", "prompt text")
	flag.Parse()
	if err := run(*server, *token, *prompt); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func run(server, token, prompt string) error {
	conn, err := grpc.NewClient(server, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("--server %q: %w", server, err)
	}
	defer conn.Close()
	client := pb.NewLayerSkipClient(conn)

	// One deadline for the whole example, so a stuck daemon cannot hang it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}

	info, err := client.GetModelInfo(ctx, &pb.GetModelInfoRequest{})
	if err != nil {
		hint := ""
		if status.Code(err) == codes.Unavailable {
			hint = " (is layerskipd running there?)"
		}
		return fmt.Errorf("GetModelInfo at %s%s: %w", server, hint, err)
	}
	fmt.Printf("model: %s (%s, %d layers, context %d, default strategy %s)\n",
		info.GetName(), info.GetArchitecture(), info.GetLayers(), info.GetContext(), info.GetDefaultStrategy())

	// No SamplingParams: greedy decoding, so unary and stream must agree.
	req := &pb.GenerateRequest{
		Input:     &pb.GenerateRequest_Prompt{Prompt: prompt},
		MaxTokens: 16,
	}
	unary, err := client.Generate(ctx, req)
	if err != nil {
		return fmt.Errorf("Generate: %w", err)
	}
	fmt.Printf("unary:  %q\n", unary.GetText())

	stream, err := client.GenerateStream(ctx, req)
	if err != nil {
		return fmt.Errorf("GenerateStream: %w", err)
	}
	fmt.Print("stream: ")
	var streamed strings.Builder
	var last *pb.GenerateChunk
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("GenerateStream: %w", err)
		}
		fmt.Print(chunk.GetText())
		streamed.WriteString(chunk.GetText())
		last = chunk
	}
	fmt.Println()

	if last == nil || last.GetFinishReason() == pb.FinishReason_FINISH_REASON_UNSPECIFIED || last.GetStats() == nil {
		return errors.New("the stream's last chunk has no finish_reason or no stats (the daemon must send both)")
	}
	s := last.GetStats()
	fmt.Printf("stats: finish=%s prompt_tokens=%d generated_tokens=%d strategy=%s tokens_per_second=%.1f time_to_first_token_ms=%.1f acceptance_rate=%.2f\n",
		strings.TrimPrefix(last.GetFinishReason().String(), "FINISH_REASON_"), s.GetPromptTokens(), s.GetGeneratedTokens(),
		s.GetStrategy(), s.GetTokensPerSecond(), s.GetTimeToFirstTokenMs(), s.GetAcceptanceRate())
	if streamed.String() != unary.GetText() {
		return fmt.Errorf("streamed text %q differs from unary text %q for the same greedy request", streamed.String(), unary.GetText())
	}
	fmt.Println("ok: streamed text equals unary text")
	return chat(ctx, client)
}

// chat asks a question through the model's chat template: Chat, then the same as ChatStream.
func chat(ctx context.Context, client pb.LayerSkipClient) error {
	req := &pb.ChatRequest{
		Messages: []*pb.ChatMessage{
			{Role: "system", Content: "You are a helpful assistant."},
			{Role: "user", Content: "What is the capital of France?"},
		},
		Options: &pb.GenerateRequest{MaxTokens: 24},
	}
	unary, err := client.Chat(ctx, req)
	if err != nil {
		return fmt.Errorf("Chat: %w", err)
	}
	fmt.Printf("chat:   %q\n", unary.GetText())
	stream, err := client.ChatStream(ctx, req)
	if err != nil {
		return fmt.Errorf("ChatStream: %w", err)
	}
	var streamed strings.Builder
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("ChatStream: %w", err)
		}
		streamed.WriteString(chunk.GetText())
	}
	fmt.Printf("chat stream: %s\n", streamed.String())
	if streamed.String() != unary.GetText() {
		return fmt.Errorf("ChatStream text %q differs from Chat text %q", streamed.String(), unary.GetText())
	}
	fmt.Println("ok: chat stream equals unary chat")
	return nil
}
