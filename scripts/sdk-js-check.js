// One real-client scenario with the AWS SDK for JavaScript v3, run by
// scripts/real-clients.sh (which installs the SDK and sets NODE_PATH).
//
// The SDK sends a stream body as `Content-Encoding: aws-chunked` with
// `x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER` and the checksum
// in a trailer, even over plain http: the aws cli (botocore) only does that
// over https, so this is the client that exercises the trailer path here.
//
//   node sdk-js-check.js ENDPOINT BUCKET SCENARIO FILE
//   SCENARIO: create-bucket | put-stream-<CRC32|CRC32C|SHA1|SHA256> |
//             multipart-stream | delete-objects | delete-bucket
// Env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY. Exits 1 with a message on failure.
"use strict";

process.removeAllListeners("warning"); // the SDK's node-version notice

const fs = require("fs");
const crypto = require("crypto");
const {
    S3Client,
    CreateBucketCommand,
    PutObjectCommand,
    GetObjectCommand,
    HeadObjectCommand,
    ListObjectsV2Command,
    DeleteObjectsCommand,
    DeleteBucketCommand,
    CreateMultipartUploadCommand,
    UploadPartCommand,
    ListPartsCommand,
    CompleteMultipartUploadCommand,
} = require("@aws-sdk/client-s3");

const [endpoint, bucket, scenario, file] = process.argv.slice(2);
if (!endpoint || !bucket || !scenario) {
    console.error("usage: node sdk-js-check.js ENDPOINT BUCKET SCENARIO [FILE]");
    process.exit(2);
}

const client = new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    maxAttempts: 1,
    credentials: {
        accessKeyId: process.env.AWS_ACCESS_KEY_ID,
        secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
    },
});

// Log what went on the wire for each request (method, path, the headers
// that matter for the chunked/trailer path).
client.middlewareStack.add(
    (next) => async (args) => {
        const r = args.request;
        const h = r.headers || {};
        const pick = [
            "content-encoding",
            "transfer-encoding",
            "content-length",
            "x-amz-content-sha256",
            "x-amz-decoded-content-length",
            "x-amz-trailer",
            "x-amz-sdk-checksum-algorithm",
        ]
            .filter((k) => h[k] !== undefined)
            .map((k) => `${k}: ${h[k]}`)
            .join("; ");
        console.log(`> ${r.method} ${r.path}${r.query && Object.keys(r.query).length ? "?" + Object.keys(r.query).join("&") : ""} [${pick}]`);
        return next(args);
    },
    { step: "finalizeRequest", name: "rcLogRequest", priority: "low" },
);

function fail(msg) {
    throw new Error(msg);
}

function sha256(buf) {
    return crypto.createHash("sha256").update(buf).digest("hex");
}

async function readAll(stream) {
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    return Buffer.concat(chunks);
}

async function getAndCompare(key, want) {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const got = await readAll(out.Body);
    if (got.length !== want.length || sha256(got) !== sha256(want)) {
        fail(`GetObject ${key}: expected ${want.length} bytes sha256=${sha256(want)}, got ${got.length} bytes sha256=${sha256(got)}`);
    }
    console.log(`GetObject ${key}: ${got.length} bytes, content matches`);
}

async function main() {
    switch (scenario) {
        case "create-bucket":
            await client.send(new CreateBucketCommand({ Bucket: bucket }));
            return;
        case "delete-bucket":
            await client.send(new DeleteBucketCommand({ Bucket: bucket }));
            return;
        case "multipart-stream": {
            // CreateMultipartUpload (ChecksumAlgorithm CRC32), UploadPart x N
            // with stream bodies (aws-chunked + CRC32 trailer), ListParts,
            // CompleteMultipartUpload with the parts' ETags and CRC32s.
            const key = "sdk-js/multipart.bin";
            const want = fs.readFileSync(file);
            const partSize = 5 * 1024 * 1024;
            const created = await client.send(
                new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ChecksumAlgorithm: "CRC32" }),
            );
            const uploadId = created.UploadId;
            if (!uploadId) fail("CreateMultipartUpload returned no UploadId");
            const parts = [];
            for (let off = 0, n = 1; off < want.length; off += partSize, n++) {
                const len = Math.min(partSize, want.length - off);
                const out = await client.send(
                    new UploadPartCommand({
                        Bucket: bucket,
                        Key: key,
                        UploadId: uploadId,
                        PartNumber: n,
                        Body: fs.createReadStream(file, { start: off, end: off + len - 1 }),
                        ContentLength: len,
                        ChecksumAlgorithm: "CRC32",
                    }),
                );
                const partMd5 = crypto.createHash("md5").update(want.subarray(off, off + len)).digest("hex");
                if (out.ETag !== `"${partMd5}"`) fail(`UploadPart ${n} ETag: expected "${partMd5}", got ${out.ETag}`);
                if (!out.ChecksumCRC32) fail(`UploadPart ${n}: no x-amz-checksum-crc32 in the response`);
                parts.push({ PartNumber: n, ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32 });
            }
            const listed = await client.send(new ListPartsCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
            const listedNums = (listed.Parts || []).map((p) => p.PartNumber).join(",");
            const wantNums = parts.map((p) => p.PartNumber).join(",");
            if (listedNums !== wantNums) fail(`ListParts: expected parts ${wantNums}, got ${listedNums}`);
            const done = await client.send(
                new CompleteMultipartUploadCommand({
                    Bucket: bucket,
                    Key: key,
                    UploadId: uploadId,
                    MultipartUpload: { Parts: parts },
                }),
            );
            console.log(`CompleteMultipartUpload: ETag ${done.ETag} ChecksumCRC32 ${done.ChecksumCRC32}`);
            if (!new RegExp(`-${parts.length}"?$`).test(done.ETag || "")) {
                fail(`multipart ETag should end with -${parts.length}, got ${done.ETag}`);
            }
            await getAndCompare(key, want);
            return;
        }
        case "delete-objects": {
            const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
            const keys = (listed.Contents || []).map((o) => ({ Key: o.Key }));
            if (keys.length === 0) fail("ListObjectsV2 returned no keys to delete");
            const out = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
            if (out.Errors && out.Errors.length) fail(`DeleteObjects errors: ${JSON.stringify(out.Errors)}`);
            if ((out.Deleted || []).length !== keys.length) fail(`DeleteObjects deleted ${(out.Deleted || []).length} of ${keys.length}`);
            const after = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
            if ((after.Contents || []).length !== 0) fail(`keys left after DeleteObjects: ${after.Contents.map((o) => o.Key)}`);
            return;
        }
        default: {
            const m = /^put-stream-(CRC32|CRC32C|SHA1|SHA256)$/.exec(scenario);
            if (!m) fail(`unknown scenario ${scenario}`);
            const algo = m[1];
            const key = `sdk-js/stream-${algo}.bin`;
            const want = fs.readFileSync(file);
            await client.send(
                new PutObjectCommand({
                    Bucket: bucket,
                    Key: key,
                    Body: fs.createReadStream(file),
                    ContentLength: want.length,
                    ChecksumAlgorithm: algo,
                }),
            );
            const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
            if (head.ContentLength !== want.length) fail(`HeadObject ContentLength: expected ${want.length}, got ${head.ContentLength}`);
            await getAndCompare(key, want);
        }
    }
}

main().catch((e) => {
    const meta = e.$metadata ? ` (HTTP ${e.$metadata.httpStatusCode})` : "";
    console.error(`FAILED ${scenario}: ${e.name}: ${e.message}${meta}`);
    if (e.$response && e.$response.body && typeof e.$response.body === "string") console.error(e.$response.body);
    process.exit(1);
});
