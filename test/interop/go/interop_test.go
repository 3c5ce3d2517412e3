package interop

// A Go service using only docs/other-sdks.md and the published JSON Schemas, against a real governor.
// Run by test/integration/interop-go.test.ts, which starts the worker, mints the tokens and sets:
//
//	GOVERNOR_INTEROP_ADDRESS     Temporal frontend (host:port)
//	GOVERNOR_INTEROP_TASK_QUEUE  the governor worker's task queue
//	GOVERNOR_INTEROP_TOKENS      JSON file written by test/interop/mint.ts
//	GOVERNOR_INTEROP_OUT         JSON file this test writes: chains to verify, results to check against the schemas
//
// Without GOVERNOR_INTEROP_ADDRESS every test skips (the jest test fails on a skip).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

type chainTokens struct {
	Credential  string `json:"credential"`
	Attestation string `json:"attestation"`
}

type tokens struct {
	Prefix   string `json:"prefix"`
	Workload string `json:"workload"`
	Staging  struct {
		chainTokens
		ChainID string          `json:"chainId"`
		Chain   json.RawMessage `json:"chain"`
	} `json:"staging"`
	Prod struct {
		chainTokens
		ChainID    string         `json:"chainId"`
		Chain      map[string]any `json:"chain"`
		StepID     string         `json:"stepId"`
		StepDigest string         `json:"stepDigest"`
		SignalVote string         `json:"signalVote"`
		UpdateVote string         `json:"updateVote"`
	} `json:"prod"`
	Malformed []chainTokens `json:"malformed"`
	Polled    []polledChain `json:"polled"`
}

// A chain of TestChainsPolledWhileTheyClose (test/interop/mint.ts PolledChain).
type polledChain struct {
	chainTokens
	ChainID string         `json:"chainId"`
	Chain   map[string]any `json:"chain"`
	Expect  string         `json:"expect"`
}

// What the jest side checks after the run: `governor verify` of each valid chain, and the recorded
// results against contracts/*.schema.json.
type output struct {
	mu          sync.Mutex
	ValidChains []string                   `json:"validChains"`
	Samples     map[string]json.RawMessage `json:"samples"`
	Rejected    []rejection                `json:"rejected"`
	Polled      *polledSummary             `json:"polled,omitempty"`
}

// What TestChainsPolledWhileTheyClose saw: how many chains it polled, how many status queries they all
// answered, and in how many histories a query cut a workflow task right after a local activity (chains that
// passed only: a failed chain's subtest stops at its failure).
type polledSummary struct {
	Chains                int `json:"chains"`
	Queries               int `json:"queries"`
	CutAfterLocalActivity int `json:"cutAfterLocalActivity"`
}

type rejection struct {
	Case    string `json:"case"`
	ChainID string `json:"chainId"`
	Message string `json:"message"`
}

var (
	tc        client.Client
	tok       tokens
	taskQueue string
	out       = &output{Samples: map[string]json.RawMessage{}}
)

func TestMain(m *testing.M) {
	address := os.Getenv("GOVERNOR_INTEROP_ADDRESS")
	if address == "" {
		os.Exit(m.Run()) // every test skips
	}
	taskQueue = os.Getenv("GOVERNOR_INTEROP_TASK_QUEUE")
	raw, err := os.ReadFile(os.Getenv("GOVERNOR_INTEROP_TOKENS"))
	if err == nil {
		err = json.Unmarshal(raw, &tok)
	}
	if err != nil || taskQueue == "" {
		fmt.Fprintf(os.Stderr, "interop: GOVERNOR_INTEROP_TASK_QUEUE and a readable GOVERNOR_INTEROP_TOKENS are required (%v)\n", err)
		os.Exit(2)
	}
	tc, err = client.Dial(client.Options{HostPort: address, Namespace: "default"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop: cannot connect to %s: %v\n", address, err)
		os.Exit(2)
	}
	code := m.Run()
	tc.Close()
	if path := os.Getenv("GOVERNOR_INTEROP_OUT"); path != "" {
		data, _ := json.MarshalIndent(out, "", "  ")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			fmt.Fprintf(os.Stderr, "interop: cannot write %s: %v\n", path, err)
			code = 2
		}
	}
	os.Exit(code)
}

func needGovernor(t *testing.T) {
	t.Helper()
	if tc == nil {
		t.Skip("GOVERNOR_INTEROP_ADDRESS is not set: run through test/integration/interop-go.test.ts")
	}
}

func (o *output) valid(chainID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ValidChains = append(o.ValidChains, chainID)
}

func (o *output) sample(name string, raw json.RawMessage) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.Samples[name] = raw
}

func (o *output) rejected(r rejection) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.Rejected = append(o.Rejected, r)
}

// searchAttribute reads a keyword search attribute of the chain's current run ("" when unset).
func searchAttribute(t *testing.T, ctx context.Context, chainID, name string) string {
	t.Helper()
	desc, err := tc.DescribeWorkflowExecution(ctx, chainID, "")
	if err != nil {
		t.Fatalf("describe %s: %v", chainID, err)
	}
	payload := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[name]
	if payload == nil {
		return ""
	}
	var value string
	if err := converter.GetDefaultDataConverter().FromPayload(payload, &value); err != nil {
		t.Fatalf("search attribute %s of %s: %v", name, chainID, err)
	}
	return value
}

func history(t *testing.T, ctx context.Context, chainID string) []*historyEvent {
	t.Helper()
	var events []*historyEvent
	iter := tc.GetWorkflowHistory(ctx, chainID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", chainID, err)
		}
		he := &historyEvent{Type: e.GetEventType()}
		if m := e.GetMarkerRecordedEventAttributes(); m != nil {
			he.Marker = m.GetMarkerName()
		}
		if w := e.GetWorkflowTaskStartedEventAttributes(); w != nil {
			he.RequestID = w.GetRequestId()
		}
		events = append(events, he)
	}
	return events
}

type historyEvent struct {
	Type      enumspb.EventType
	Marker    string
	RequestID string // of a workflow task started event
}

func countEvents(events []*historyEvent, typ enumspb.EventType) int {
	n := 0
	for _, e := range events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func status(t *testing.T, ctx context.Context, chainID string) (json.RawMessage, chainState) {
	t.Helper()
	v, err := tc.QueryWorkflow(ctx, chainID, "", "status")
	if err != nil {
		t.Fatalf("status query of %s: %v", chainID, err)
	}
	var raw json.RawMessage
	if err := v.Get(&raw); err != nil {
		t.Fatalf("status of %s: %v", chainID, err)
	}
	var s chainState
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("status of %s is not a chain state: %v", chainID, err)
	}
	return raw, s
}

// The parts of contracts/chain-state.schema.json this test reads.
type chainState struct {
	Status       string   `json:"status"`
	Reason       string   `json:"reason"`
	PendingRoles []string `json:"pendingRoles"`
	Steps        []struct {
		ID       string         `json:"id"`
		Status   string         `json:"status"`
		Approval *approvalState `json:"approval"`
	} `json:"steps"`
}

type approvalState struct {
	StepID     string `json:"stepId"`
	StepDigest string `json:"stepDigest"`
	Quorum     int    `json:"quorum"`
	ApprovedBy []struct {
		Approver string `json:"approver"`
	} `json:"approvedBy"`
	StillNeeded int    `json:"stillNeeded"`
	Outcome     string `json:"outcome"`
}

var terminal = map[string]bool{"Completed": true, "Denied": true, "Failed": true, "Revoked": true, "Rejected": true}

// waitStatus polls the status query until ok holds (the first workflow task may not have run yet).
func waitStatus(t *testing.T, ctx context.Context, chainID string, what string, ok func(chainState) bool) (json.RawMessage, chainState) {
	t.Helper()
	var last chainState
	for ctx.Err() == nil {
		if v, err := tc.QueryWorkflow(ctx, chainID, "", "status"); err == nil {
			var raw json.RawMessage
			var s chainState
			if v.Get(&raw) == nil && json.Unmarshal(raw, &s) == nil {
				if ok(s) {
					return raw, s
				}
				last = s
				if terminal[s.Status] {
					break
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("chain %s never reached %s (last status %q %s)", chainID, what, last.Status, last.Reason)
	return nil, chainState{}
}

func TestStagingChainAsDocumented(t *testing.T) {
	needGovernor(t)
	// The documented chain is examples/chains/deploy-staging.yaml (as JSON, from the tokens file).
	var doc, example any
	docJSON, _ := json.Marshal(StagingChain())
	if json.Unmarshal(docJSON, &doc) != nil || json.Unmarshal(tok.Staging.Chain, &example) != nil || !reflect.DeepEqual(doc, example) {
		t.Fatalf("StagingChain() is not examples/chains/deploy-staging.yaml:\n doc:     %s\n example: %s", docJSON, tok.Staging.Chain)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := tok.Staging.ChainID

	result, err := DeployStaging(ctx, tc, taskQueue, id, tok.Staging.Credential, tok.Staging.Attestation)
	if err != nil {
		t.Fatalf("the documented staging chain failed: %v", err)
	}
	if result.Status != "Completed" || result.ChainID != id || len(result.Steps) != 2 || result.Checkpoint == "" {
		t.Fatalf("want a Completed, checkpointed chain %s of 2 steps; got status %q (%s), chain %q, %d steps", id, result.Status, result.Reason, result.ChainID, len(result.Steps))
	}
	for i, want := range []string{"deploy", "announce"} {
		if result.Steps[i]["id"] != want || result.Steps[i]["status"] != "completed" {
			t.Errorf("step %d: want %s completed, got %v %v", i, want, result.Steps[i]["id"], result.Steps[i]["status"])
		}
	}
	out.valid(id)
	var raw json.RawMessage
	if err := tc.GetWorkflow(ctx, id, "").Get(ctx, &raw); err != nil {
		t.Fatalf("result of %s: %v", id, err)
	}
	out.sample("stagingResult", raw)

	// The workflow keeps its search attributes itself: this start set none.
	if got := searchAttribute(t, ctx, id, "GovernorStatus"); got != "Completed" {
		t.Errorf("GovernorStatus: want Completed, got %q", got)
	}
	if got := searchAttribute(t, ctx, id, "GovernorWorkload"); got != tok.Workload {
		t.Errorf("GovernorWorkload: want %q (upserted by the workflow), got %q", tok.Workload, got)
	}

	// The documented start options refuse a reused chain id instead of returning the old run.
	spare := tok.Malformed[len(tok.Malformed)-1]
	_, err = DeployStaging(ctx, tc, taskQueue, id, spare.Credential, spare.Attestation)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if !errors.As(err, &started) {
		t.Errorf("starting chain %s a second time: want WorkflowExecutionAlreadyStarted, got %v", id, err)
	}
}

func TestEscalatedChainApprovedFromGo(t *testing.T) {
	needGovernor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := tok.Prod
	run, err := StartChain(ctx, tc, taskQueue, p.ChainID, p.Chain, p.Credential, p.Attestation)
	if err != nil {
		t.Fatalf("start %s: %v", p.ChainID, err)
	}
	raw, s := waitStatus(t, ctx, p.ChainID, "AwaitingApproval", func(s chainState) bool { return s.Status == "AwaitingApproval" })
	out.sample("statusAwaitingApproval", raw)
	if len(s.PendingRoles) != 1 || s.PendingRoles[0] != "sre-lead" {
		t.Fatalf("pendingRoles: want [sre-lead], got %v", s.PendingRoles)
	}
	a := s.Steps[0].Approval
	if a == nil || a.StepID != p.StepID || a.Quorum != 2 || a.StillNeeded != 2 || a.Outcome != "pending" {
		t.Fatalf("approval of step %s: want quorum 2, 2 still needed, pending; got %+v", p.StepID, a)
	}
	if a.StepDigest != p.StepDigest {
		t.Fatalf("the step digest the status query shows (%s) is not the one the votes were minted for (%s): test/interop/mint.ts computes it differently from the authorize activity", a.StepDigest, p.StepDigest)
	}

	// Malformed votes: each update is rejected by its validator and never reaches history.
	before := history(t, ctx, p.ChainID)
	malformedVotes := map[string]any{
		"token not a compact JWS": map[string]any{"token": "not-a-jwt"},
		"numeric token":           map[string]any{"token": 42},
		"no token":                map[string]any{},
		"unknown field":           map[string]any{"token": p.SignalVote, "approver": "alice"},
		"a bare string":           p.SignalVote,
		"a workload credential":   map[string]any{"token": p.Credential},
	}
	for name, arg := range malformedVotes {
		handle, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: p.ChainID, UpdateName: "submitApproval", Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err == nil {
			var ignored json.RawMessage
			err = handle.Get(ctx, &ignored)
		}
		why, ok := InvalidInput(err)
		if !ok {
			t.Errorf("malformed vote (%s): want the update rejected with GOVERNOR_INVALID_INPUT, got %v", name, err)
			continue
		}
		if strings.Contains(why, p.SignalVote) {
			t.Errorf("malformed vote (%s): the rejection echoes the token", name)
		}
	}
	after := history(t, ctx, p.ChainID)
	for _, typ := range []enumspb.EventType{enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED} {
		if n := countEvents(after, typ) - countEvents(before, typ); n != 0 {
			t.Errorf("rejected votes reached history: %d new %s events", n, typ)
		}
	}
	if _, s := status(t, ctx, p.ChainID); s.Steps[0].Approval == nil || s.Steps[0].Approval.StillNeeded != 2 {
		t.Fatalf("a rejected vote was counted: %+v", s.Steps[0].Approval)
	}

	// First sre-lead by signal (as from the Temporal UI or `temporal workflow signal`).
	if err := tc.SignalWorkflow(ctx, p.ChainID, "", "approve", map[string]any{"token": p.SignalVote}); err != nil {
		t.Fatalf("approve signal: %v", err)
	}
	waitStatus(t, ctx, p.ChainID, "one approval counted", func(s chainState) bool {
		return s.Steps[0].Approval != nil && len(s.Steps[0].Approval.ApprovedBy) == 1
	})

	// Second sre-lead by update: the answer is the approval after this vote, quorum reached.
	handle, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: p.ChainID, UpdateName: "submitApproval", Args: []any{map[string]any{"token": p.UpdateVote}}, WaitForStage: client.WorkflowUpdateStageCompleted})
	if err != nil {
		t.Fatalf("submitApproval: %v", err)
	}
	var updateRaw json.RawMessage
	if err := handle.Get(ctx, &updateRaw); err != nil {
		t.Fatalf("submitApproval result: %v", err)
	}
	out.sample("submitApprovalResult", updateRaw)
	var voted struct {
		Verdict struct {
			Counted  bool   `json:"counted"`
			Approver string `json:"approver"`
			Reason   string `json:"reason"`
		} `json:"verdict"`
		Approval approvalState `json:"approval"`
	}
	if err := json.Unmarshal(updateRaw, &voted); err != nil {
		t.Fatalf("submitApproval result: %v", err)
	}
	if !voted.Verdict.Counted || voted.Verdict.Approver != "carol" {
		t.Errorf("verdict: want carol's vote counted, got %+v", voted.Verdict)
	}
	if voted.Approval.Outcome != "approved" || voted.Approval.StillNeeded != 0 || len(voted.Approval.ApprovedBy) != 2 {
		t.Errorf("approval after the quorum vote: want outcome approved, 0 still needed, 2 approvers; got outcome %q, %d still needed, %d approvers", voted.Approval.Outcome, voted.Approval.StillNeeded, len(voted.Approval.ApprovedBy))
	}

	var result ChainResult
	if err := run.Get(ctx, &result); err != nil {
		t.Fatalf("result of %s: %v", p.ChainID, err)
	}
	if result.Status != "Completed" {
		t.Fatalf("want Completed, got %s (%s)", result.Status, result.Reason)
	}
	out.valid(p.ChainID)
	var raw2 json.RawMessage
	if err := tc.GetWorkflow(ctx, p.ChainID, "").Get(ctx, &raw2); err != nil {
		t.Fatalf("result of %s: %v", p.ChainID, err)
	}
	out.sample("prodResult", raw2)
	if got := searchAttribute(t, ctx, p.ChainID, "GovernorStatus"); got != "Completed" {
		t.Errorf("GovernorStatus: want Completed, got %q", got)
	}
	if got := searchAttribute(t, ctx, p.ChainID, "GovernorWorkload"); got != tok.Workload {
		t.Errorf("GovernorWorkload: want %q (upserted by the workflow), got %q", tok.Workload, got)
	}
}

// A malformed start: the input (nil: no argument at all), the field path the refusal must name, and
// for the unknown-field case a word the message must also contain.
type badStart struct {
	name    string
	input   func(chainID string, t chainTokens) any
	path    string
	mention string
}

func stagingInput(chainID string, t chainTokens) map[string]any {
	return map[string]any{"chainId": chainID, "chain": StagingChain(), "credential": t.Credential, "attestation": t.Attestation}
}

func steps(in map[string]any) []any { return in["chain"].(map[string]any)["steps"].([]any) }

func step0(in map[string]any) map[string]any { return steps(in)[0].(map[string]any) }

func badStarts() []badStart {
	mutate := func(f func(in map[string]any)) func(string, chainTokens) any {
		return func(id string, t chainTokens) any {
			in := stagingInput(id, t)
			f(in)
			return in
		}
	}
	return []badStart{
		{"resume in a first run", func(id string, _ chainTokens) any {
			// The bypass of issue #13: deploy-prod with resume past its escalated step and a fake credential.
			return map[string]any{
				"chainId": id, "chain": tok.Prod.Chain, "credential": "not.a.credential", "attestation": "not.an.attestation",
				"resume": map[string]any{"nextStep": 1, "head": map[string]any{"seq": 0, "hash": strings.Repeat("0", 64)}, "steps": []any{}, "completed": []any{"deploy"}, "runs": 1},
			}
		}, "resume", ""},
		{"unknown executor", mutate(func(in map[string]any) { step0(in)["executor"] = map[string]any{"type": "ssh"} }), "chain.steps[0].executor.type", ""},
		{"duplicate step ids", mutate(func(in map[string]any) { steps(in)[1].(map[string]any)["id"] = "deploy" }), "chain.steps[1].id", ""},
		{"numeric step id", mutate(func(in map[string]any) { step0(in)["id"] = 7 }), "chain.steps[0].id", ""},
		{"unknown top-level field", mutate(func(in map[string]any) { in["priority"] = "high" }), "(root)", "priority"},
		{"missing chain", mutate(func(in map[string]any) { delete(in, "chain") }), "chain", ""},
		{"step without resource", mutate(func(in map[string]any) { delete(step0(in), "resource") }), "chain.steps[0].resource", ""},
		{"steps as a string", mutate(func(in map[string]any) { in["chain"].(map[string]any)["steps"] = "deploy, announce" }), "chain.steps", ""},
		{"timeoutMs as a string", mutate(func(in map[string]any) {
			step0(in)["executor"] = map[string]any{"type": "http", "url": "https://hooks.example.com/deploy", "timeoutMs": "10s"}
		}), "chain.steps[0].executor.timeoutMs", ""},
		{"ftp URL", mutate(func(in map[string]any) {
			step0(in)["executor"] = map[string]any{"type": "http", "url": "ftp://files.example.com/deploy"}
		}), "chain.steps[0].executor.url", ""},
		// Valid JSON text that JavaScript reads as Infinity: the workflow says where, and that it is not a finite number.
		{"1e400 in a step's input", mutate(func(in map[string]any) {
			step0(in)["input"] = map[string]any{"service": "web", "replicas": json.RawMessage("1e400")}
		}), "chain.steps[0].input.replicas", "non-finite number"},
		{"chainId is not the workflow id", mutate(func(in map[string]any) { in["chainId"] = in["chainId"].(string) + "-other" }), "chainId", ""},
		{"argument is a string", func(string, chainTokens) any { return "deploy web to staging" }, "(root)", ""},
		{"no argument", func(string, chainTokens) any { return nil }, "(root)", ""},
	}
}

func TestMalformedInputsRejected(t *testing.T) {
	needGovernor(t)
	cases := badStarts()
	if len(tok.Malformed) < len(cases)+1 {
		t.Fatalf("the tokens file has %d spare credentials, %d needed", len(tok.Malformed), len(cases)+1)
	}
	for i, bc := range cases {
		creds := tok.Malformed[i]
		t.Run(strings.ReplaceAll(bc.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("%s-bad-%02d", tok.Prefix, i)
			input := bc.input(id, creds)
			// A refusal ends the run at once; without the bound a workflow-task retry loop would hang here forever.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			options := client.StartWorkflowOptions{ID: id, TaskQueue: taskQueue, WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE, WorkflowExecutionErrorWhenAlreadyStarted: true}
			var args []any
			if input != nil {
				args = []any{input}
			}
			run, err := tc.ExecuteWorkflow(ctx, options, "governedChainWorkflow", args...)
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			var result ChainResult
			err = run.Get(ctx, &result)
			if ctx.Err() != nil {
				t.Fatalf("the chain did not end within 30 s (workflow-task retry loop?)")
			}
			why, ok := InvalidInput(err)
			if !ok {
				t.Fatalf("want a workflow failure of type GOVERNOR_INVALID_INPUT naming %s; got status %q (%s), error %v", bc.path, result.Status, result.Reason, err)
			}
			t.Logf("%s -> GOVERNOR_INVALID_INPUT: %s", bc.name, why)
			out.rejected(rejection{Case: bc.name, ChainID: id, Message: why})
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) && !appErr.NonRetryable() {
				t.Errorf("the failure is retryable")
			}
			if !strings.Contains(why, bc.path+": ") {
				t.Errorf("the message does not name %q: %s", bc.path, why)
			}
			if bc.mention != "" && !strings.Contains(why, bc.mention) {
				t.Errorf("the message does not mention %q: %s", bc.mention, why)
			}
			if strings.Contains(why, creds.Credential) || strings.Contains(why, creds.Attestation) {
				t.Errorf("the message echoes a token")
			}
			if got := searchAttribute(t, ctx, id, "GovernorStatus"); got != "Rejected" {
				t.Errorf("GovernorStatus: want Rejected, got %q", got)
			}
			desc, err := tc.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				t.Fatalf("describe: %v", err)
			}
			if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_FAILED {
				t.Errorf("execution status: want FAILED, got %s", st)
			}
			// Nothing authorized or executed, no retried workflow task.
			for _, e := range history(t, ctx, id) {
				switch {
				case e.Type == enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED, e.Type == enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
					t.Errorf("history has %s: the input was not refused cleanly", e.Type)
				case e.Type == enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, e.Type == enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
					e.Type == enumspb.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
					t.Errorf("history has %s: something ran for a refused input", e.Type)
				case e.Type == enumspb.EVENT_TYPE_MARKER_RECORDED && e.Marker != "core_patch":
					t.Errorf("history has a %s marker: something ran for a refused input", e.Marker)
				}
			}
		})
	}
}

// cutAfterLocalActivity reports whether a workflow task of the history ended right after a local activity's
// marker and the worker asked for the next task at once, which is how the server records a task that a query
// arriving during the activity cut short (test/harness/history.ts hasCutAfterLocalActivity).
func cutAfterLocalActivity(events []*historyEvent) bool {
	for i := 0; i+2 < len(events); i++ {
		if events[i].Type == enumspb.EVENT_TYPE_MARKER_RECORDED && events[i].Marker == "core_local_activity" &&
			events[i+1].Type == enumspb.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED &&
			events[i+2].Type == enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED && events[i+2].RequestID == "request-from-RespondWorkflowTaskCompleted" {
			return true
		}
	}
	return false
}

func queryStatus(ctx context.Context, chainID string) (chainState, error) {
	v, err := tc.QueryWorkflow(ctx, chainID, "", "status")
	if err != nil {
		return chainState{}, err
	}
	var s chainState
	if err := v.Get(&s); err != nil {
		return chainState{}, fmt.Errorf("the answer is not a chain state: %w", err)
	}
	return s, nil
}

func closed(ctx context.Context, chainID string) (bool, error) {
	desc, err := tc.DescribeWorkflowExecution(ctx, chainID, "")
	if err != nil {
		return false, err
	}
	return desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

// 40 chains polled with the `status` query, as `governor run --wait` polls them but more often, while their final local
// activities run: a query arriving then can make the worker end the workflow task early. With workflow code
// that asked patched() after a local activity (before patches-decided-at-start, contracts/patches.ts), such a
// history no longer replayed, so every query after the chain closed failed with TMPRL1100 (and so did
// `governor verify`, which the jest side runs on each of these chains). Half the chains are denied by the
// default bundle, half complete; every query, before and after the close, must answer.
func TestChainsPolledWhileTheyClose(t *testing.T) {
	needGovernor(t)
	if len(tok.Polled) < 2 {
		t.Fatalf("the tokens file has %d polled chains (test/interop/mint.ts mints them)", len(tok.Polled))
	}
	// Each query takes a round trip on top of this. Against the workflow code of 003b2f1 (before the fix): 16
	// chains polled every 25 ms passed, every 5 ms failed in one run of two; 40 chains every 5 ms failed (5 of
	// the 20 denied chains).
	const interval = 5 * time.Millisecond
	const afterClose = 4
	var mu sync.Mutex
	summary := &polledSummary{Chains: len(tok.Polled)}
	t.Run("chains", func(t *testing.T) {
		for _, p := range tok.Polled {
			t.Run(p.ChainID, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				defer cancel()
				run, err := StartChain(ctx, tc, taskQueue, p.ChainID, p.Chain, p.Credential, p.Attestation)
				if err != nil {
					t.Fatalf("start %s: %v", p.ChainID, err)
				}
				// Started: `governor verify` must pass for it whatever this test sees below.
				out.valid(p.ChainID)
				queries := 0
				ask := func(when string) chainState {
					t.Helper()
					queries++
					s, err := queryStatus(ctx, p.ChainID)
					if err != nil {
						t.Fatalf("status query %d of %s (%s) failed: %v", queries, p.ChainID, when, err)
					}
					return s
				}
				// Until the chain says it has ended.
				s := ask("before it said it ended")
				for !terminal[s.Status] {
					if ctx.Err() != nil {
						t.Fatalf("%s did not end within 3 minutes (last status %q)", p.ChainID, s.Status)
					}
					time.Sleep(interval)
					s = ask("before it said it ended")
				}
				if s.Status != p.Expect {
					t.Errorf("%s: the status query says %q (%s), want %q", p.ChainID, s.Status, s.Reason, p.Expect)
				}
				// Until the server has closed the run (the final checkpoint and archive steps run after the status is terminal).
				for {
					done, err := closed(ctx, p.ChainID)
					if err != nil {
						t.Fatalf("describe %s: %v", p.ChainID, err)
					}
					if done {
						break
					}
					if ctx.Err() != nil {
						t.Fatalf("%s said %q but its run did not close within 3 minutes", p.ChainID, s.Status)
					}
					ask("after it ended, before its run closed")
					time.Sleep(interval)
				}
				// After the close every query replays the whole history on a worker.
				for i := 0; i < afterClose; i++ {
					if s := ask(fmt.Sprintf("%d of %d after its run closed", i+1, afterClose)); s.Status != p.Expect {
						t.Errorf("%s after it closed: the status query says %q, want %q", p.ChainID, s.Status, p.Expect)
					}
					time.Sleep(interval)
				}
				var result ChainResult
				if err := run.Get(ctx, &result); err != nil {
					t.Fatalf("result of %s: %v", p.ChainID, err)
				}
				if result.Status != p.Expect || result.ChainID != p.ChainID || result.Checkpoint == "" {
					t.Errorf("result of %s: want a checkpointed %s chain; got status %q (%s), chain %q, checkpoint %q", p.ChainID, p.Expect, result.Status, result.Reason, result.ChainID, result.Checkpoint)
				}
				desc, err := tc.DescribeWorkflowExecution(ctx, p.ChainID, "")
				if err != nil {
					t.Fatalf("describe %s: %v", p.ChainID, err)
				}
				if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
					t.Errorf("%s: execution status %s, want COMPLETED (a denied chain completes with status Denied)", p.ChainID, st)
				}
				cut := cutAfterLocalActivity(history(t, ctx, p.ChainID))
				mu.Lock()
				summary.Queries += queries
				if cut {
					summary.CutAfterLocalActivity++
				}
				mu.Unlock()
			})
		}
	})
	// How many histories the queries cut depends on timing, so it is reported (and the jest side prints it), not required.
	t.Logf("%d chains answered %d status queries; %d histories cut after a local activity by a query", summary.Chains, summary.Queries, summary.CutAfterLocalActivity)
	out.mu.Lock()
	out.Polled = summary
	out.mu.Unlock()
}
