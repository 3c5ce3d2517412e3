import { defaultBundleWith } from './bundles';

// A test bundle with its own `Doc` entity and `doc.*` actions (the default bundle's `File` belongs to the
// MCP gateway): documents the agent may read and delete (at most two deletions per session, from
// `context.session`), and a protected document whose writes need two SRE leads.
const DOC_SCHEMA = `
type SessionActions = { "doc.delete"?: Long, "doc.read"?: Long };
type Session = { steps: Long, actions: SessionActions };
type DocContext = {
  now: __cedar::datetime,
  nowEpochSeconds: Long,
  attestation: Attestation,
  approvals?: Approvals,
  session?: Session,
};
entity Doc;
action "doc.read", "doc.write", "doc.delete" appliesTo {
  principal: [Workload],
  resource: [Doc],
  context: DocContext,
};
`;
const DOC_POLICIES = `
@id("fs-permit")
permit (principal is Workload, action in [Action::"doc.read", Action::"doc.write", Action::"doc.delete"], resource is Doc);

@id("fs-secrets-forbid")
@reason("the secrets file is never touched by an agent")
forbid (principal, action, resource == Doc::"secrets");

@id("fs-session-delete-limit")
@reason("at most two deletions per session")
forbid (principal, action == Action::"doc.delete", resource)
when { context has session && context.session.actions has "doc.delete" && context.session.actions["doc.delete"] >= 2 };

@id("fs-protected-write-requires-sre")
@escalate("sre-lead")
@quorum("2")
@deadline("10m")
@reason("writing the protected file needs two SRE leads")
forbid (principal, action == Action::"doc.write", resource == Doc::"protected")
unless { context has approvals.byRole && context.approvals.byRole["sre-lead"] >= 2 };
`;
/** The bundle folder (default bundle plus the above), with the manifest's session settings. */
export const sessionTestBundle = (idleTimeout = '5m'): string =>
  defaultBundleWith(
    (m) => {
      m.session = { idleTimeout, maxOutputBytes: 4096 };
    },
    { 'schema.cedarschema': (text) => text + DOC_SCHEMA, 'docs.cedar': DOC_POLICIES },
  );
