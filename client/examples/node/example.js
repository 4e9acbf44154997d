#!/usr/bin/env node
// Call layerskipd from Node (@grpc/grpc-js, .proto loaded at run time by
// @grpc/proto-loader): GetModelInfo, a greedy unary Generate, then the same
// request as GenerateStream, printing the text as it arrives and the final
// stats. Exits non-zero when the streamed text differs from the unary text
// (greedy decoding must give the same tokens) or the last chunk lacks
// finish_reason/stats. Run `npm ci` first: see ../README.md.
'use strict';
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const { values: args } = parseArgs({
  options: {
    server: { type: 'string', default: '127.0.0.1:50051' }, // host:port or unix:/path
    token: { type: 'string' }, // the one in the daemon's --auth-token-file
    prompt: { type: 'string', default: 'The capital of France is' },
    proto: { type: 'string', default: path.join(__dirname, '../../../proto/layerskip/v1/layerskip.proto') },
  },
});

// keepCase: field names as in the .proto (max_tokens, finish_reason).
const definition = protoLoader.loadSync(args.proto, {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
});
const { LayerSkip } = grpc.loadPackageDefinition(definition).layerskip.v1;
const client = new LayerSkip(args.server, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
if (args.token) metadata.set('authorization', `Bearer ${args.token}`);
// A deadline on every call, so a stuck daemon cannot hang the example.
const options = () => ({ deadline: Date.now() + 120_000 });

const unaryCall = (method, request) => new Promise((resolve, reject) => {
  client[method](request, metadata, options(), (err, response) => (err ? reject(err) : resolve(response)));
});

async function main() {
  const info = await unaryCall('GetModelInfo', {});
  console.log(`model: ${info.name} (${info.architecture}, ${info.layers} layers, `
    + `context ${info.context}, default strategy ${info.default_strategy})`);

  // No sampling params: greedy decoding, so unary and stream must agree.
  const request = { prompt: args.prompt, max_tokens: 16 };
  const unary = await unaryCall('Generate', request);
  console.log(`unary:  ${JSON.stringify(unary.text)}`);

  process.stdout.write('stream: ');
  let streamed = '';
  let last = null;
  for await (const chunk of client.GenerateStream(request, metadata, options())) {
    process.stdout.write(chunk.text);
    streamed += chunk.text;
    last = chunk;
  }
  process.stdout.write('\n');

  if (!last || last.finish_reason === 'FINISH_REASON_UNSPECIFIED' || !last.stats) {
    throw new Error("the stream's last chunk has no finish_reason or no stats (the daemon must send both)");
  }
  const s = last.stats;
  console.log(`stats: finish=${last.finish_reason.replace('FINISH_REASON_', '')} `
    + `prompt_tokens=${s.prompt_tokens} generated_tokens=${s.generated_tokens} strategy=${s.strategy} `
    + `tokens_per_second=${s.tokens_per_second.toFixed(1)} `
    + `time_to_first_token_ms=${s.time_to_first_token_ms.toFixed(1)} acceptance_rate=${s.acceptance_rate.toFixed(2)}`);
  if (streamed !== unary.text) {
    throw new Error(`streamed text ${JSON.stringify(streamed)} differs from unary text `
      + `${JSON.stringify(unary.text)} for the same greedy request`);
  }
  console.log('ok: streamed text equals unary text');

  // a question through the model's chat template: Chat, then the same as ChatStream
  const chat = {
    messages: [{ role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: 'What is the capital of France?' }],
    options: { max_tokens: 24 },
  };
  const answer = await unaryCall('Chat', chat);
  console.log(`chat:   ${JSON.stringify(answer.text)}`);
  let chatStreamed = '';
  for await (const chunk of client.ChatStream(chat, metadata, options())) chatStreamed += chunk.text;
  console.log(`chat stream: ${chatStreamed}`);
  if (chatStreamed !== answer.text) {
    throw new Error(`ChatStream text ${JSON.stringify(chatStreamed)} differs from Chat text ${JSON.stringify(answer.text)}`);
  }
  console.log('ok: chat stream equals unary chat');
}

main()
  .catch((err) => {
    const hint = err.code === grpc.status.UNAVAILABLE ? ' (is layerskipd running there?)' : '';
    const where = err.code !== undefined ? `${grpc.status[err.code]} from ${args.server}${hint}: ` : '';
    console.error(`error: ${where}${err.details || err.message}`);
    process.exitCode = 1;
  })
  .finally(() => client.close());
