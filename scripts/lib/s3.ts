/** A small S3 client for the scripts (MinIO or any S3-compatible store). */
/** The few S3 calls the scripts make themselves (buckets, listing, upload), path-style; credentials from AWS_* in `env`. */
export async function s3Client(endpoint: string, env: NodeJS.ProcessEnv) {
  const sdk = await import("@aws-sdk/client-s3");
  const client = new sdk.S3Client({
    endpoint,
    region: env.AWS_REGION ?? "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
    maxAttempts: 3,
  });
  const where = (e: unknown) => `${(e as Error).name}: ${(e as Error).message} (endpoint ${endpoint})`;
  return {
    client,
    /** Creates `bucket`; false if it already existed. */
    async ensureBucket(bucket: string): Promise<boolean> {
      try {
        await client.send(new sdk.CreateBucketCommand({ Bucket: bucket }));
        return true;
      } catch (e) {
        if (["BucketAlreadyOwnedByYou", "BucketAlreadyExists"].includes((e as Error).name)) return false;
        throw new Error(`cannot create bucket ${bucket}: ${where(e)}`, { cause: e });
      }
    },
    /** Every object whose key starts with `prefix` (all pages), by key: size and ETag without quotes. */
    async list(bucket: string, prefix: string): Promise<Map<string, { size: number; etag: string }>> {
      const out = new Map<string, { size: number; etag: string }>();
      let token: string | undefined;
      try {
        do {
          const page = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
          for (const o of page.Contents ?? []) if (o.Key) out.set(o.Key, { size: o.Size ?? 0, etag: (o.ETag ?? "").replace(/"/g, "") });
          token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token);
      } catch (e) {
        throw new Error(`cannot list s3://${bucket}/${prefix}: ${where(e)}`, { cause: e });
      }
      return out;
    },
    /** Uploads `body`; with `md5` (base64) the store checks that it received those bytes. */
    async put(bucket: string, key: string, body: Buffer, opts: { contentType?: string; md5?: string } = {}): Promise<void> {
      try {
        await client.send(new sdk.PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: opts.contentType, ContentMD5: opts.md5 }));
      } catch (e) {
        throw new Error(`cannot upload s3://${bucket}/${key}: ${where(e)}`, { cause: e });
      }
    },
  };
}
