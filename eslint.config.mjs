// @ts-check
/**
 * ESLint for the whole repository (issue #18): the Pulumi program (index.ts, config.ts,
 * components/, stacks/), scripts/, tests/, bench/, trainer/ and policy/.
 *
 * Type-aware: typescript-eslint's project service gives every .ts file the program of its
 * nearest tsconfig.json, so each part is checked with its own compiler options:
 * ./tsconfig.json (program, scripts, tests, bench, vitest.config.mts), trainer/tsconfig.json
 * (src, tests, bench), policy/tsconfig.json, and tests/policy/fixtures/violating/tsconfig.json.
 * A .ts file outside all of them fails the run ("not found by the project service"): add it
 * to a tsconfig's `include` rather than to a default project here.
 *
 * Rule choice: @eslint/js recommended + typescript-eslint recommendedTypeChecked, minus the
 * rules below that measured as noise on this code (counts from the first run, 2,929 findings
 * in all), plus the async rules stated explicitly. strictTypeChecked and the stylistic sets
 * are not used.
 */
import js from "@eslint/js";
import { defineConfig, globalIgnores } from "eslint/config";
import tseslint from "typescript-eslint";

const UNSAFE_ANY_RULES = [
  "@typescript-eslint/no-unsafe-argument",
  "@typescript-eslint/no-unsafe-assignment",
  "@typescript-eslint/no-unsafe-call",
  "@typescript-eslint/no-unsafe-member-access",
  "@typescript-eslint/no-unsafe-return",
];
const rulesSetTo = (names, level) => Object.fromEntries(names.map((n) => [n, level]));

export default defineConfig([
  globalIgnores(["**/node_modules/", "**/dist/", "coverage/", ".pulumi/", "bench/results/", "trainer/bench/results/"]),

  {
    // An eslint-disable comment that no longer suppresses anything fails the run.
    linterOptions: { reportUnusedDisableDirectives: "error" },
  },

  {
    files: ["**/*.{ts,mts,cts}"],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // The three rules #18 asks for, stated here with their options (recommended has them too).
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          // pulumi.log.* return a promise the runtime already tracks (rpcKeepAlive) and that
          // never rejects (delivery failures go to stderr): calling them bare is the API's use.
          allowForKnownSafeCalls: [{ from: "package", package: "@pulumi/pulumi", name: ["debug", "info", "warn", "error"] }],
        },
      ],
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-unused-vars": [
        "error",
        {
          args: "after-used",
          argsIgnorePattern: "^_",
          varsIgnorePattern: "^_",
          caughtErrorsIgnorePattern: "^_",
          destructuredArrayIgnorePattern: "^_",
        },
      ],

      // `any` is deliberate where a value is an untyped Kubernetes manifest, Helm values or a
      // parsed API response (components/, scripts/submit.ts, the tests' recorded resources):
      // 229 declarations. Spelling them `unknown` plus casts would say nothing more.
      "@typescript-eslint/no-explicit-any": "off",
      // The same choice seen from the use site: with `any` allowed, every member access on a
      // manifest is a finding (1,898, 1,716 of them in tests). On where input comes from
      // outside and `any` is not meant to appear: trainer/src and policy/ (block below).
      ...rulesSetTo(UNSAFE_ANY_RULES, "off"),
      // The code writes `xs[i]!` as if noUncheckedIndexedAccess were on, and the rule calls
      // each `!` unnecessary while it is off (671 of its 714 findings). Turn it back on with
      // that compiler option.
      "@typescript-eslint/no-unnecessary-type-assertion": "off",
      // An `async` method without `await` is how this code implements a Promise-returning
      // interface (Reducer, Servable, dynamic providers, fakes in tests): a throw becomes a
      // rejection, as callers expect. All 33 findings were that.
      "@typescript-eslint/require-await": "off",
      // Passing on a rejection reason received as `unknown` (Latch.race) is forwarding, not
      // rejecting with a non-Error; rejecting with a literal is still an error.
      "@typescript-eslint/prefer-promise-reject-errors": ["error", { allowThrowingUnknown: true }],
    },
  },

  {
    // Code that handles input from outside (REST and gRPC requests, TF_CONFIG, model files,
    // stack state): an `any` reaching a use there is a hole in the validation.
    files: ["trainer/src/**/*.ts", "policy/**/*.ts"],
    rules: rulesSetTo(UNSAFE_ANY_RULES, "error"),
  },

  {
    // Expected-output regexes spell the printed columns' two spaces as they appear on screen.
    files: ["tests/**/*.ts", "trainer/tests/**/*.ts"],
    rules: { "no-regex-spaces": "off" },
  },

  {
    // Plain Node.js scripts, outside every tsconfig: no type information, no TypeScript rules.
    files: ["**/*.{js,mjs,cjs}"],
    extends: [js.configs.recommended],
    languageOptions: {
      globals: { console: "readonly", process: "readonly" },
    },
  },
  {
    files: ["**/*.{js,cjs}"],
    languageOptions: {
      sourceType: "commonjs",
      globals: { require: "readonly", module: "writable", __dirname: "readonly", __filename: "readonly" },
    },
  },
]);
