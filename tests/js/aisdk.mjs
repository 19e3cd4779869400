// The Vercel AI SDK against a Responses server, one scenario per run; prints what the SDK returned as JSON.
// usage: node aisdk.mjs SCENARIO '{"baseURL": ..., "apiKey": ..., "model": ..., "store": true}'
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, Output, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [scenario, raw] = process.argv.slice(2);
const opts = JSON.parse(raw);
const openai = createOpenAI({ baseURL: opts.baseURL, apiKey: opts.apiKey });
const model = openai.responses(opts.model);

// The client executes this tool; the calls it received are kept to be reported.
const calls = [];
const getWeather = tool({
  description: "Return the current weather for a city.",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => {
    calls.push(city);
    return `It is sunny and 22C in ${city}.`;
  },
});

// What every scenario reports: the final text, the steps (their response ids, tool calls and results).
async function report(result) {
  const steps = await result.steps;
  return {
    text: await result.text,
    finishReason: await result.finishReason,
    usage: await result.usage,
    warnings: (await result.warnings) ?? [],
    executed: calls,
    steps: steps.map((s) => ({
      responseId: s.response.id,
      modelId: s.response.modelId,
      text: s.text,
      reasoning: s.reasoningText ?? null,
      finishReason: s.finishReason,
      toolCalls: s.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input })),
      toolResults: s.toolResults.map((r) => ({ id: r.toolCallId, output: r.output })),
      providerMetadata: s.providerMetadata ?? null,
    })),
  };
}

const scenarios = {
  // One plain call: generateText sends no `stream` key and reads the Response object.
  async generate() {
    return report(await generateText({ model, prompt: "Say hello" }));
  },
  // streamText: the text arrives as deltas.
  async stream() {
    const result = streamText({ model, prompt: "Say hello" });
    const chunks = [];
    for await (const chunk of result.textStream) chunks.push(chunk);
    return { chunks, ...(await report(result)) };
  },
  // Two steps: the model calls get_weather, the SDK runs it and sends the result back, the model answers.
  // With store on the SDK refers to stored items by id; with store off it replays them inline, reasoning
  // sealed in encrypted_content. `reasoning` tells it the model reasons (as a gpt-5 name would) and asks for
  // the reasoning summary.
  async tools() {
    const args = {
      model,
      prompt: "What's the weather in Paris?",
      tools: { get_weather: getWeather },
      stopWhen: stepCountIs(4),
      providerOptions: {
        openai: { store: opts.store, forceReasoning: opts.reasoning ?? false, reasoningSummary: opts.reasoning ? "auto" : undefined },
      },
    };
    if (!opts.stream) return report(await generateText(args));
    const result = streamText(args);
    const parts = [];
    for await (const part of result.fullStream) parts.push(part.type);
    return { parts, ...(await report(result)) };
  },
  // Structured output (a json_schema text format) on a chain: the second call continues the first by
  // previousResponseId, with instructions and metadata.
  async object() {
    const first = await generateText({ model, prompt: "Remember the colour teal." });
    const result = await generateText({
      model,
      prompt: "Which colour? Answer as JSON.",
      output: Output.object({ schema: z.object({ colour: z.string() }) }),
      providerOptions: {
        openai: { previousResponseId: first.response.id, instructions: "Be terse.", metadata: { suite: "respd" } },
      },
    });
    return { firstId: first.response.id, output: result.output, ...(await report(result)) };
  },
  // Built-in tools respd has no executor for (web search, code interpreter) are offered by the SDK; the
  // answer must still come.
  async builtin() {
    const tools = {
      web_search: openai.tools.webSearch(),
      code_interpreter: openai.tools.codeInterpreter({ container: { fileIds: [] } }),
    };
    return report(await generateText({ model, prompt: "Search the news", tools }));
  },
  // The provider's file search tool, run by the server: one step whose provider-executed call and result
  // come from the file_search_call item, and whose file citations become document sources.
  async fileSearch() {
    const args = {
      model,
      prompt: "How do I reset my router?",
      tools: { file_search: openai.tools.fileSearch({ vectorStoreIds: opts.vectorStoreIds, maxNumResults: 3 }) },
      providerOptions: { openai: { include: ["file_search_call.results"] } },
    };
    let result = null;
    const parts = [];
    if (opts.stream) {
      result = streamText(args);
      for await (const part of result.fullStream) parts.push(part.type);
    } else {
      result = await generateText(args);
    }
    const steps = await result.steps;
    return {
      parts,
      sources: await result.sources,
      providerResults: steps.flatMap((s) => s.content.filter((c) => c.type === "tool-result")),
      ...(await report(result)),
    };
  },
};

const out = await scenarios[scenario]();
process.stdout.write(JSON.stringify(out) + "\n");
