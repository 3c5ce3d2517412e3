// Package interop starts governed chains from Go with only the Temporal Go SDK, as a service in
// another language would, following docs/other-sdks.md. interop_test.go runs it against a real
// governor (test/integration/interop-go.test.ts).
package interop

// docs/other-sdks.md shows the code between the BEGIN and END lines byte for byte
// (test/unit/other-sdks-doc.test.ts checks it): change both together.

// BEGIN docs/other-sdks.md
import (
	"context"
	"errors"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// StagingChain is examples/chains/deploy-staging.yaml. Fields left out get the
// defaults of contracts/chain-input.schema.json (the workflow applies them).
func StagingChain() map[string]any {
	return map[string]any{
		"workload": "agent:release-bot",
		"owner":    "team-release",
		"summary":  "release-bot deploys web 1.4.2 to staging",
		"steps": []any{
			map[string]any{
				"id": "deploy", "action": "deploy",
				"resource":     map[string]any{"type": "Environment", "id": "staging"},
				"input":        map[string]any{"service": "web", "version": "1.4.2"},
				"executor":     map[string]any{"type": "noop"},
				"compensation": map[string]any{"action": "rollback", "executor": map[string]any{"type": "noop"}},
			},
			map[string]any{
				"id": "announce", "action": "notify",
				"resource": map[string]any{"type": "Channel", "id": "releases"},
				"input":    map[string]any{"text": "web 1.4.2 is on staging"},
				"executor": map[string]any{"type": "noop"},
			},
		},
	}
}

// StartChain starts a governed chain whose workflow id is chainID. jwtSVID is a fresh
// credential from your workload identity provider (one per chain), attestation comes
// from your attester.
func StartChain(ctx context.Context, c client.Client, taskQueue, chainID string, chain map[string]any, jwtSVID, attestation string) (client.WorkflowRun, error) {
	in := map[string]any{
		"chainId":     chainID, // must equal the workflow id
		"chain":       chain,
		"credential":  jwtSVID,
		"attestation": attestation,
	}
	return c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        chainID,
		TaskQueue: taskQueue, // "governor" unless the worker serves another queue
		// A chain id names one lineage: never reuse one, and never attach to an
		// existing chain by mistake (the SDK's defaults would do both).
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, "governedChainWorkflow", in)
}

// ChainResult is what governedChainWorkflow returns (contracts/chain-result.schema.json).
type ChainResult struct {
	ChainID     string           `json:"chainId"`
	Status      string           `json:"status"` // Completed, Denied, Failed or Revoked
	Reason      string           `json:"reason,omitempty"`
	Steps       []map[string]any `json:"steps"` // as in contracts/chain-state.schema.json
	ReceiptHead struct {
		Seq  int    `json:"seq"`
		Hash string `json:"hash"`
	} `json:"receiptHead"`
	Checkpoint string `json:"checkpoint,omitempty"`
}

// DeployStaging starts the staging chain and waits for its result.
func DeployStaging(ctx context.Context, c client.Client, taskQueue, chainID, jwtSVID, attestation string) (ChainResult, error) {
	var result ChainResult
	run, err := StartChain(ctx, c, taskQueue, chainID, StagingChain(), jwtSVID, attestation)
	if err != nil {
		return result, err // *serviceerror.WorkflowExecutionAlreadyStarted: the chain id was used before
	}
	err = run.Get(ctx, &result)
	return result, err
}

// InvalidInput reports whether err is the governor refusing the chain's input, and why:
// "<path>: <problem>" for each problem, joined by "; " (GovernorStatus is "Rejected").
func InvalidInput(err error) (string, bool) {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == "GOVERNOR_INVALID_INPUT" {
		return appErr.Message(), true
	}
	return "", false
}

// END docs/other-sdks.md
