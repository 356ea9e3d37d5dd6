/**
 * Protocol Buffers text format (what TF Serving's `--model_config_file` is written in),
 * read into a plain object by walking a protobufjs message type: the type says which
 * names are fields, which are messages, repeated, maps or enums, so the parser itself
 * knows nothing about any one message. protobufjs reads binary and JSON only.
 *
 * Accepted: `name: value` and `name { ... }` / `name: { ... }` / `name < ... >`; fields
 * separated by whitespace, `,` or `;`; `#` comments; single- or double-quoted strings
 * with C escapes, adjacent strings concatenated; decimal, hex and octal integers, floats,
 * `true`/`false`, enum names; lists `name: [a, b]`; map fields as repeated
 * `{ key: ... value: ... }` entries. Not accepted: extensions and `Any` expansions.
 * Errors name the line and column.
 */
import * as protobuf from "protobufjs";

export class TextFormatError extends Error {
  constructor(where: string, line: number, col: number, problem: string) {
    super(`${where}:${line}:${col}: ${problem}`);
    this.name = "TextFormatError";
  }
}

type Tok =
  | { kind: "ident"; text: string; line: number; col: number }
  | { kind: "string"; text: string; line: number; col: number }
  | { kind: "number"; text: string; line: number; col: number }
  | { kind: "punct"; text: string; line: number; col: number }
  | { kind: "eof"; text: ""; line: number; col: number };

const ESCAPES: Record<string, string> = { n: "\n", t: "\t", r: "\r", "\\": "\\", "'": "'", '"': '"', a: "\x07", b: "\b", f: "\f", v: "\v", "?": "?" };

function tokenize(where: string, text: string): Tok[] {
  const toks: Tok[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const err = (p: string): never => {
    throw new TextFormatError(where, line, i - lineStart + 1, p);
  };
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\n") {
      line++;
      i++;
      lineStart = i;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "#") {
      while (i < text.length && text[i] !== "\n") i++;
      continue;
    }
    const col = i - lineStart + 1;
    if ("{}<>:[],;".includes(c)) {
      toks.push({ kind: "punct", text: c, line, col });
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      let out = "";
      i++;
      for (;;) {
        if (i >= text.length || text[i] === "\n") throw new TextFormatError(where, line, col, "unterminated string");
        const d = text[i]!;
        if (d === c) {
          i++;
          break;
        }
        if (d === "\\") {
          const e = text[i + 1] ?? "";
          if (e in ESCAPES) {
            out += ESCAPES[e];
            i += 2;
          } else if (/[0-7]/.test(e)) {
            const m = /^[0-7]{1,3}/.exec(text.slice(i + 1))![0];
            out += String.fromCharCode(parseInt(m, 8));
            i += 1 + m.length;
          } else if (e === "x") {
            const m = /^[0-9a-fA-F]{1,2}/.exec(text.slice(i + 2))?.[0] ?? err("\\x needs hex digits");
            out += String.fromCharCode(parseInt(m, 16));
            i += 2 + m.length;
          } else err(`unknown escape \\${e}`);
          continue;
        }
        out += d;
        i++;
      }
      // Adjacent string literals are one string.
      const prev = toks[toks.length - 1];
      if (prev && prev.kind === "string") prev.text += out;
      else toks.push({ kind: "string", text: out, line, col });
      continue;
    }
    const num = /^-?(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fF]?|inf(inity)?|nan)/i.exec(text.slice(i));
    if (num && (c === "-" || /[0-9.]/.test(c))) {
      toks.push({ kind: "number", text: num[0], line, col });
      i += num[0].length;
      continue;
    }
    const id = /^[A-Za-z_][A-Za-z0-9_.]*/.exec(text.slice(i));
    if (id) {
      toks.push({ kind: "ident", text: id[0], line, col });
      i += id[0].length;
      continue;
    }
    err(`unexpected character ${JSON.stringify(c)}`);
  }
  toks.push({ kind: "eof", text: "", line, col: i - lineStart + 1 });
  return toks;
}

const INT_TYPES = new Set(["int32", "sint32", "sfixed32", "uint32", "fixed32", "int64", "sint64", "sfixed64", "uint64", "fixed64"]);

/**
 * Parses `text` as a message of `type`. Returns the plain object (field names as in the
 * .proto, int64 as numbers within 2^53, enums by name, maps as objects); `where` names the
 * source in errors.
 */
export function parseTextFormat(where: string, text: string, type: protobuf.Type): Record<string, unknown> {
  const toks = tokenize(where, text);
  let p = 0;
  const peek = (): Tok => toks[p]!;
  const next = (): Tok => toks[p++]!;
  const fail = (t: Tok, problem: string): never => {
    throw new TextFormatError(where, t.line, t.col, problem);
  };
  const isPunct = (t: Tok, s: string): boolean => t.kind === "punct" && t.text === s;

  const scalar = (field: protobuf.Field, t: Tok): unknown => {
    const ft = field.type;
    if (field.resolvedType instanceof protobuf.Enum) {
      const e = field.resolvedType;
      if (t.kind === "ident" && t.text in e.values) return t.text;
      if (t.kind === "number" && /^-?\d+$/.test(t.text)) {
        const name = e.valuesById[Number(t.text)];
        if (name !== undefined) return name;
      }
      return fail(t, `${field.name} must be one of ${Object.keys(e.values).join(", ")}; got ${t.text}`);
    }
    if (ft === "string" || ft === "bytes") {
      if (t.kind !== "string") return fail(t, `${field.name} must be a quoted string; got ${t.text || "end of input"}`);
      return t.text;
    }
    if (ft === "bool") {
      if (t.kind === "ident" && (t.text === "true" || t.text === "True" || t.text === "t")) return true;
      if (t.kind === "ident" && (t.text === "false" || t.text === "False" || t.text === "f")) return false;
      if (t.kind === "number" && (t.text === "1" || t.text === "0")) return t.text === "1";
      return fail(t, `${field.name} must be true or false; got ${t.text}`);
    }
    if (INT_TYPES.has(ft)) {
      if (t.kind !== "number" || !/^-?(0[xX][0-9a-fA-F]+|\d+)$/.test(t.text)) return fail(t, `${field.name} must be an integer; got ${t.text || "end of input"}`);
      const neg = t.text.startsWith("-");
      const body = neg ? t.text.slice(1) : t.text;
      const v = body.startsWith("0x") || body.startsWith("0X") ? parseInt(body, 16) : /^0\d/.test(body) ? parseInt(body, 8) : Number(body);
      const n = neg ? -v : v;
      if (!Number.isSafeInteger(n)) return fail(t, `${field.name}: ${t.text} is too large`);
      if (ft.startsWith("u") || ft.startsWith("fixed")) {
        if (n < 0) return fail(t, `${field.name} must not be negative; got ${t.text}`);
      }
      if (ft.endsWith("32") && (n > 0xffffffff || n < -0x80000000)) return fail(t, `${field.name}: ${t.text} does not fit in 32 bits`);
      return n;
    }
    if (ft === "float" || ft === "double") {
      if (t.kind === "number" || (t.kind === "ident" && /^-?(inf(inity)?|nan)$/i.test(t.text))) {
        const s = t.text.replace(/[fF]$/, "");
        if (/inf/i.test(s)) return s.startsWith("-") ? -Infinity : Infinity;
        if (/nan/i.test(s)) return NaN;
        return Number(s);
      }
      return fail(t, `${field.name} must be a number; got ${t.text}`);
    }
    return fail(t, `${field.name} has type ${ft}, which this parser does not read`);
  };

  const message = (msgType: protobuf.Type, close: string | undefined): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    const seenOneof = new Map<string, string>();
    for (;;) {
      const t = peek();
      if (close === undefined ? t.kind === "eof" : isPunct(t, close)) {
        next();
        return out;
      }
      if (t.kind === "eof") return fail(t, `missing "${close}"`);
      if (t.kind !== "ident") return fail(t, `expected a field name of ${msgType.fullName.replace(/^\./, "")}; got ${t.text}`);
      next();
      const field = msgType.fields[t.text];
      if (!field) {
        return fail(t, `${msgType.fullName.replace(/^\./, "")} has no field "${t.text}"; it has: ${Object.keys(msgType.fields).join(", ")}`);
      }
      field.resolve();
      if (field.partOf) {
        const other = seenOneof.get(field.partOf.name);
        if (other !== undefined && other !== field.name) return fail(t, `${field.name} and ${other} are alternatives (oneof ${field.partOf.name}); give one`);
        seenOneof.set(field.partOf.name, field.name);
      }
      const isMessage = field.resolvedType instanceof protobuf.Type || field instanceof protobuf.MapField;
      let sep = false;
      if (isPunct(peek(), ":")) {
        next();
        sep = true;
      }
      if (!sep && !isMessage) return fail(peek(), `expected ":" after ${field.name}`);
      const readOne = (): unknown => {
        const v = peek();
        if (isMessage) {
          if (!isPunct(v, "{") && !isPunct(v, "<")) return fail(v, `${field.name} is a message: expected "{"`);
          next();
          const closeWith = v.text === "{" ? "}" : ">";
          if (field instanceof protobuf.MapField) {
            const entry = new protobuf.Type(`MlpTextFormatEntry${p}`).add(new protobuf.Field("key", 1, field.keyType)).add(new protobuf.Field("value", 2, field.type));
            msgType.parent?.add(entry);
            try {
              entry.resolveAll();
              return message(entry, closeWith);
            } finally {
              msgType.parent?.remove(entry);
            }
          }
          return message(field.resolvedType as protobuf.Type, closeWith);
        }
        next();
        return scalar(field, v);
      };
      const values: unknown[] = [];
      if (sep && isPunct(peek(), "[")) {
        if (!field.repeated && !(field instanceof protobuf.MapField)) return fail(peek(), `${field.name} is not repeated; a list is not allowed`);
        next();
        if (!isPunct(peek(), "]")) {
          for (;;) {
            values.push(readOne());
            if (isPunct(peek(), ",")) next();
            else break;
          }
        }
        if (!isPunct(peek(), "]")) return fail(peek(), `expected "]"`);
        next();
      } else values.push(readOne());
      if (field instanceof protobuf.MapField) {
        const m = (out[field.name] ??= {}) as Record<string, unknown>;
        for (const e of values as Record<string, unknown>[]) {
          // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a map key, as scalar() parsed it: a string, number or boolean
          const key = String(e.key ?? (field.keyType === "string" ? "" : 0));
          const ft = field.resolvedType;
          m[key] = e.value ?? (ft instanceof protobuf.Type ? {} : ft instanceof protobuf.Enum ? Object.keys(ft.values)[0] : field.type === "string" ? "" : 0);
        }
      } else if (field.repeated) {
        ((out[field.name] ??= []) as unknown[]).push(...values);
      } else {
        if (field.name in out) return fail(t, `${field.name} is given twice`);
        out[field.name] = values[0];
      }
      if (isPunct(peek(), ",") || isPunct(peek(), ";")) next();
    }
  };
  return message(type, undefined);
}
