// The GGUF metadata common/model_check extracts, compared with what the independent
// @huggingface/gguf parser (pinned in package.json) reads from the same files.
//
// Usage: node gguf_crosscheck.mjs PATH_TO_model_info_dump
// model_info_dump writes its generated GGUF files into a scratch folder and prints what
// CheckGguf read from each; this script reads each file again with @huggingface/gguf and
// compares architecture, name, context length, tokenizer model, vocabulary size, tensor count,
// parameter count and the quantization (general.file_type by llama.cpp's name, or the tensor
// type with the most bytes). Exits 1 on any disagreement. It also proves that its comparison
// can fail: a copy of the first result with one field changed must disagree.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gguf, GGMLFileQuantizationType, GGMLQuantizationType } from "@huggingface/gguf";

// Bytes per block and elements per block of the tensor types the generated files use
// (ggml-common.h), to find the type holding the most bytes when no file type is stated.
const TYPE_BYTES = {
  [GGMLQuantizationType.F32]: [4, 1],
  [GGMLQuantizationType.F16]: [2, 1],
  [GGMLQuantizationType.Q4_0]: [18, 32],
  [GGMLQuantizationType.Q4_K]: [144, 256],
  [GGMLQuantizationType.Q6_K]: [210, 256],
};

function expectedQuantization(metadata, tensorInfos) {
  const fileType = metadata["general.file_type"];
  if (fileType !== undefined) return GGMLFileQuantizationType[Number(fileType)];
  const bytes = new Map();
  for (const t of tensorInfos) {
    const elements = t.shape.reduce((a, b) => a * Number(b), 1);
    const [size, block] = TYPE_BYTES[t.dtype];
    bytes.set(t.dtype, (bytes.get(t.dtype) ?? 0) + (elements / block) * size);
  }
  const [best] = [...bytes.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0];
  return GGMLQuantizationType[best];
}

async function theirs(path) {
  const { metadata, tensorInfos, parameterCount } = await gguf(path, {
    allowLocalFile: true,
    computeParametersCount: true,
  });
  const arch = metadata["general.architecture"];
  return {
    architecture: arch,
    name: metadata["general.name"] ?? "",
    context_length: Number(metadata[`${arch}.context_length`]),
    tokenizer: metadata["tokenizer.ggml.model"],
    vocabulary_size: metadata["tokenizer.ggml.tokens"].length,
    item_count: Number(metadata.tensor_count),
    tensor_infos: tensorInfos.length,
    parameter_count: parameterCount,
    quantization: expectedQuantization(metadata, tensorInfos),
    container: `gguf v${metadata.version}`,
  };
}

function ours(info) {
  return {
    architecture: info.architecture ?? "",
    name: info.name ?? "",
    context_length: Number(info.context_length ?? 0),
    tokenizer: info.tokenizer ?? "",
    vocabulary_size: Number(info.vocabulary_size ?? 0),
    item_count: Number(info.item_count ?? 0),
    tensor_infos: Number(info.item_count ?? 0),
    parameter_count: Number(info.parameter_count ?? 0),
    quantization: info.quantization ?? "",
    container: info.container ?? "",
  };
}

function differences(a, b) {
  return Object.keys(b).filter((k) => a[k] !== b[k]).map((k) => `${k}: ours ${a[k]}, theirs ${b[k]}`);
}

const dumper = process.argv[2];
if (!dumper) {
  console.error("usage: node gguf_crosscheck.mjs PATH_TO_model_info_dump");
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), "gguf-crosscheck-"));
let failed = false;
try {
  const results = JSON.parse(execFileSync(dumper, [dir], { encoding: "utf8" }));
  if (results.length < 4) throw new Error(`model_info_dump wrote ${results.length} files`);
  let firstPair = null;
  for (const { path, info } of results) {
    const expected = await theirs(path);
    const actual = ours(info);
    firstPair ??= [actual, expected];
    const diff = differences(actual, expected);
    if (diff.length) {
      failed = true;
      console.error(`${path}: disagree\n  ${diff.join("\n  ")}`);
    } else {
      console.log(`${path}: agree ${JSON.stringify(actual)}`);
    }
  }
  const tampered = { ...firstPair[0], parameter_count: firstPair[0].parameter_count + 1 };
  if (differences(tampered, firstPair[1]).length !== differences(...firstPair).length + 1) {
    failed = true;
    console.error("self-check: a changed parameter count went unnoticed");
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
