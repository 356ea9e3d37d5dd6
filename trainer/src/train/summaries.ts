/**
 * TensorBoard scalars. The native summary writer (`tf.node.summaryFileWriter`) writes
 * `events.out.tfevents.*` files that TensorBoard reads from `<logdir>/train` and
 * `<logdir>/validation`, so both curves share a chart per tag.
 */
import * as path from "node:path";
import { tf } from "../tf";

/** Where scalars go; the training loop only needs this. */
export interface ScalarSink {
  scalar(tag: string, value: number, step: number): void;
  flush(): void;
}

/** Writers for `<logdir>/train` and `<logdir>/validation`. */
export function tensorBoardSinks(logdir: string): { train: ScalarSink; validation: ScalarSink } {
  return {
    train: tf.node.summaryFileWriter(path.join(logdir, "train")),
    validation: tf.node.summaryFileWriter(path.join(logdir, "validation")),
  };
}
