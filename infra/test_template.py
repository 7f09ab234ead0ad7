"""Holds infra/template.yaml and the code together. Run by scripts/test.sh with cfn-lint's
Python (its decoder reads CloudFormation YAML with !Ref, !Sub, ...). Prints one line per
check and a closing 'N passed, N failed'."""

import pathlib
import re
import sys

from cfnlint.decode import decode

ROOT = pathlib.Path(__file__).resolve().parent.parent
template, problems = decode(str(ROOT / "infra" / "template.yaml"))
assert not problems, problems
resources = template["Resources"]
results = []


def check(name, condition, detail=""):
    results.append((name, bool(condition), detail))


def functions():
    return {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}


# Function names and binaries: one template function per functions/<name> crate.
crates = sorted(p.parent.name for p in (ROOT / "functions").glob("*/Cargo.toml"))
binaries = sorted(f["Metadata"]["BuildProperties"]["Binary"] for f in functions().values())
check("every function crate is deployed, and nothing else", crates == binaries, f"{crates} vs {binaries}")
for logical, f in functions().items():
    binary = f["Metadata"]["BuildProperties"]["Binary"]
    name = f["Properties"]["FunctionName"]
    check(f"{logical} is named after its binary", name == {"Fn::Sub": "${AWS::StackName}-" + binary}, str(name))
    check(f"{logical} builds with cargo-lambda", f["Metadata"]["BuildMethod"] == "rust-cargolambda")

# Environment variables: the table in shared/src/handlers/aws_env.rs says which function
# reads which variable; the template must set exactly those.
aws_env = (ROOT / "shared" / "src" / "handlers" / "aws_env.rs").read_text()
wanted = {}
for var, users in re.findall(r"^//! \| `([A-Z_]+)` \| ([a-z, ]+) \|", aws_env, re.M):
    for user in users.split(","):
        wanted.setdefault(user.strip(), set()).add(var)
declared = set(re.search(r"pub const VARIABLES: &\[&str\] = &\[(.*?)\];", aws_env, re.S).group(1).replace('"', "").replace(",", " ").split())
check("the VARIABLES list matches the documented table", declared == set().union(*wanted.values()), f"{declared}")
for logical, f in functions().items():
    binary = f["Metadata"]["BuildProperties"]["Binary"]
    got = set(f["Properties"].get("Environment", {}).get("Variables", {}))
    check(f"{logical} sets exactly the variables its code reads", got == wanted.get(binary, set()), f"{got} vs {wanted.get(binary)}")
    code = (ROOT / "functions" / binary / "src" / "main.rs").read_text()
    check(f"{binary}'s main builds its ports from aws_env", "aws_env::" in code)

# The analytics trigger: ObjectCreated:* on keys ending in the manifest name the code writes.
ports = (ROOT / "shared" / "src" / "ports.rs").read_text()
manifest_name = re.search(r'"\{\}/(_manifest\.json)"', ports).group(1)
notification = resources["Bucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"][0]
rules = notification["Filter"]["S3Key"]["Rules"]
check("analytics fires on ObjectCreated:*", notification["Event"] == "s3:ObjectCreated:*")
check("analytics fires only on manifests", rules == [{"Name": "suffix", "Value": manifest_name}], str(rules))
check("analytics is the notified function", notification["Function"] == {"Fn::GetAtt": ["AnalyticsFunction", "Arn"]})

# Every function that writes or reads the output uses the bucket the stack creates.
bucket_name = resources["Bucket"]["Properties"]["BucketName"]
for logical, f in functions().items():
    env = f["Properties"].get("Environment", {}).get("Variables", {})
    if "BUCKET_NAME" in env:
        check(f"{logical} uses the stack's bucket", env["BUCKET_NAME"] == bucket_name, str(env["BUCKET_NAME"]))

# The table: partition key pk (S) as the DynamoDB adapter uses it; TTL on expires_at.
table = resources["Table"]["Properties"]
dynamodb = (ROOT / "shared" / "src" / "adapters" / "dynamodb.rs").read_text()
check("the table's key is pk (S)", table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
      and table["AttributeDefinitions"] == [{"AttributeName": "pk", "AttributeType": "S"}])
check("the adapter keys items by pk", '.key("pk"' in dynamodb and 'attribute_not_exists(pk)' in dynamodb)
check("TTL is on expires_at, on-demand billing, PITR", table["TimeToLiveSpecification"]["AttributeName"] == "expires_at"
      and table["BillingMode"] == "PAY_PER_REQUEST" and table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"])

# The queue: export consumes it one message at a time with partial batch failures;
# dispatch and export send to it; visibility >= 6 x the export timeout for every choice.
export = resources["ExportFunction"]["Properties"]
event = export["Events"]["Jobs"]
check("export consumes the job queue", event["Type"] == "SQS" and event["Properties"]["Queue"] == {"Fn::GetAtt": ["JobQueue", "Arn"]})
check("batch size 1 with ReportBatchItemFailures", event["Properties"]["BatchSize"] == 1
      and event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"])
for logical in ("DispatchFunction", "ExportFunction"):
    url = resources[logical]["Properties"]["Environment"]["Variables"]["QUEUE_URL"]
    check(f"{logical} sends to the job queue", url == {"Ref": "JobQueue"})
visibility = template["Mappings"]["QueueVisibility"]
allowed = template["Parameters"]["ExportTimeoutSeconds"]["AllowedValues"]
check("visibility timeout >= 6 x export timeout", all(visibility[t]["Seconds"] >= 6 * int(t) for t in allowed) and set(allowed) == set(visibility))
handlers = (ROOT / "shared" / "src" / "handlers" / "export.rs").read_text()
margin = int(re.search(r"END_MARGIN: Duration = Duration::from_secs\((\d+)\)", handlers).group(1))
check("the export timeout leaves room for the end margin", min(int(t) for t in allowed) > 3 * margin)
sqs = (ROOT / "shared" / "src" / "adapters" / "sqs.rs").read_text()
check("continuation delays stay within SQS's 900 s", "Duration::from_secs(900)" in sqs)
redrive = resources["JobQueue"]["Properties"]["RedrivePolicy"]
check("failed jobs reach the dead-letter queue", redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["JobDeadLetterQueue", "Arn"]})

# The secrets the export function may read are exactly the org secret prefix.
all_statements = export["Policies"][0]["Statement"]
statements = [s for s in all_statements if "Action" in s]
secret_arns = [s["Resource"] for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
check("export reads only org secrets", secret_arns == [{"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${OrgSecretPrefix}*"}])
check("the default secret prefix matches the code's", template["Parameters"]["OrgSecretPrefix"]["Default"] in aws_env)

# Least privilege to the prefix: the keys each function's code uses, and no more.
def leading_keys(statement):
    return statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")

ledger_rs = (ROOT / "shared" / "src" / "adapters" / "ledger.rs").read_text()
domain_rs = (ROOT / "shared" / "src" / "domain.rs").read_text()
ports_rs = (ROOT / "shared" / "src" / "ports.rs").read_text()
code_prefixes = set(re.findall(r'"(bucket|job|work|request)#', ledger_rs + domain_rs + ports_rs))
check("the code's table key prefixes are the ones the policies name", code_prefixes == {"bucket", "job", "work", "request"}, str(code_prefixes))
check("the org registry key is the one the dispatch policy names", '"registry#orgs"' in ledger_rs)
table_statements = [s for s in statements if s["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]]
check("export's table access is limited to its keys", [leading_keys(s) for s in table_statements] == [["bucket#*", "job#*", "work#*"]])
dispatch_statements = resources["DispatchFunction"]["Properties"]["Policies"][0]["Statement"]
check("dispatch's table access is limited to its keys",
      [leading_keys(s) for s in dispatch_statements if s["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]]
      == [["registry#orgs", "work#*", "request#*"]])
deletes = [s for s in statements if s["Action"] == "s3:DeleteObject"]
check("export deletes only under evaluations/",
      len(deletes) == 1 and all(r["Fn::Sub"].endswith("/evaluations/*") for r in deletes[0]["Resource"]["Fn::If"][1:]))
writes = [s for s in statements if s["Action"] == ["s3:GetObject", "s3:PutObject"]]
check("export reads and writes only evaluations/ and forms/",
      len(writes) == 1 and all(sorted(r["Fn::Sub"].rsplit("/", 2)[-2] for r in branch) == ["evaluations", "forms"]
                               for branch in writes[0]["Resource"]["Fn::If"][1:]))
lists = [s for s in statements if s["Action"] == "s3:ListBucket"]
check("export lists only under evaluations/", len(lists) == 1 and "s3:prefix" in lists[0].get("Condition", {}).get("StringLike", {}))
s3_rs = (ROOT / "shared" / "src" / "adapters" / "s3.rs").read_text()
check("the S3 sink lists only run folders of partitions", '"{}/run=", partition.prefix()' in s3_rs and '"evaluations/org_id=' in ports_rs)
kms = [s for s in all_statements if "Fn::If" in s]
check("kms:Decrypt only with a configured key and through Secrets Manager",
      len(kms) == 1 and kms[0]["Fn::If"][0] == "HasOrgSecretKmsKey"
      and kms[0]["Fn::If"][1]["Action"] == "kms:Decrypt"
      and "kms:ViaService" in kms[0]["Fn::If"][1]["Condition"]["StringEquals"])

# The analytics tables: Glue columns are exactly the writer's (tables/src/schema.rs), in
# order and type; partition keys and the projected location follow the key the writer uses.
schema = (ROOT / "tables" / "src" / "schema.rs").read_text()
glue_types = {"Str": "string", "Timestamp": "timestamp", "Double": "double", "Boolean": "boolean", "Long": "bigint"}
partition_columns = re.search(r"PARTITION_COLUMNS: &\[&str\] = &\[(.*?)\];", schema).group(1).replace('"', "").replace(",", " ").split()
tables_rs = (ROOT / "tables" / "src" / "lib.rs").read_text()
key_format = re.search(r'"tables/\{table\}/org_id=\{\}/date_field=\{\}/source=\{\}/date=\{\}"', tables_rs)
check("the writer's key is tables/<table>/org_id=…/date_field=…/source=…/date=…", key_format)
glue_tables = {v["Properties"]["TableInput"]["Name"]: v["Properties"]["TableInput"]
               for v in resources.values() if v["Type"] == "AWS::Glue::Table"}
written = {}
for const, name in re.findall(r'\("(\w+)", (\w+)\)', re.search(r"pub const TABLES.*?\];", schema, re.S).group(0)):
    body = re.search(r"pub const %s: &\[Column\] = &\[(.*?)\];" % name, schema, re.S).group(1)
    written[const] = [{"Name": n, "Type": glue_types[k]} for n, k in re.findall(r'col\("(\w+)", (\w+),', body)]
check("a Glue table per written table, and nothing else", set(glue_tables) == set(written), f"{set(glue_tables)} vs {set(written)}")
for name, columns in written.items():
    t = glue_tables.get(name, {})
    sd = t.get("StorageDescriptor", {})
    check(f"{name}: Glue columns = the writer's schema", sd.get("Columns") == columns,
          f"{[c['Name'] for c in sd.get('Columns', [])]} vs {[c['Name'] for c in columns]}")
    check(f"{name}: partition keys = the key's segments",
          t.get("PartitionKeys") == [{"Name": c, "Type": "string"} for c in partition_columns], str(t.get("PartitionKeys")))
    params = t.get("Parameters", {})
    template_text = str(params.get("storage.location.template"))
    check(f"{name}: projected location follows the writer's key",
          f"/tables/{name}/org_id=${{!org_id}}/date_field=${{!date_field}}/source=${{!source}}/date=${{!date}}/" in template_text, template_text)
    check(f"{name}: Parquet SerDe", sd.get("SerdeInfo", {}).get("SerializationLibrary", "").endswith("ParquetHiveSerDe"))
    check(f"{name}: projection over org (injected), date field, source, date",
          params.get("projection.enabled") == "true" and params.get("projection.org_id.type") == "injected"
          and params.get("projection.date.type") == "date" and params.get("projection.date.format") == "yyyy-MM-dd"
          and set(params.get("projection.date_field.values", "").split(",")) == {"submittedDate", "releaseDate", "createdDate", "conversationDate"}
          and set(params.get("projection.source.values", "").split(",")) == {"both", "human", "auto"})
workgroup = resources["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]
check("Athena results are encrypted and the workgroup's settings enforced",
      workgroup["EnforceWorkGroupConfiguration"] and workgroup["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] in ("SSE_S3", "SSE_KMS", "CSE_KMS"))
analytics = resources["AnalyticsFunction"]["Properties"]
check("analytics failures go to a queue", analytics["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["AnalyticsFailureQueue", "Arn"]})
check("an alarm watches the analytics failure queue", any(
    r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("Dimensions", [{}])[0].get("Value") == {"Fn::GetAtt": ["AnalyticsFailureQueue", "QueueName"]}
    for r in resources.values()))

failed = [r for r in results if not r[1]]
for name, ok, detail in results:
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
