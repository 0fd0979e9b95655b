package server_test

import (
	"net/http"
	"testing"

	"github.com/idemgate/idemgate/controlplane/api"
)

func TestAdminGet(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do(http.MethodGet, api.PathAdminKeys+query("s", "absent"), nil)
	if p := problemOf(t, resp, body, http.StatusNotFound); p.Type != "urn:idemgate:problem:record-not-found" {
		t.Errorf("problem type = %q", p.Type)
	}

	tok := e.acquire("s", "held", "fp-1")
	var rec api.Record
	e.call(http.MethodGet, api.PathAdminKeys+query("s", "held"), nil, http.StatusOK, &rec)
	if rec.Scope != "s" || rec.Key != "held" || rec.State != api.StateInProgress || rec.Fingerprint != storedFP("fp-1") ||
		rec.LeaseExpiresAt == nil || rec.CreatedAt.IsZero() || !rec.ExpiresAt.After(rec.CreatedAt) || rec.Status != 0 || rec.Response != nil {
		t.Errorf("in-progress record = %+v", rec)
	}

	stored := api.StoredResponse{Status: 201, Headers: [][2]string{{"content-type", "application/json"}}, Body: []byte(`{"card":"4242"}`)}
	e.completeWith("s", "held", tok, stored)
	rec = api.Record{}
	e.call(http.MethodGet, api.PathAdminKeys+query("s", "held"), nil, http.StatusOK, &rec)
	if rec.State != api.StateCompleted || rec.Status != 201 || rec.LeaseExpiresAt != nil || rec.Response != nil {
		t.Errorf("completed record without body = %+v, want no response", rec)
	}
	rec = api.Record{}
	e.call(http.MethodGet, api.PathAdminKeys+query("s", "held", "body=1"), nil, http.StatusOK, &rec)
	if rec.Response == nil || string(rec.Response.Body) != string(stored.Body) || rec.Response.Status != 201 {
		t.Errorf("record with body=1 = %+v (response %+v)", rec, rec.Response)
	}
}

func TestAdminDelete(t *testing.T) {
	e := newEnv(t)
	path := api.PathAdminKeys + query("s", "k")
	var res api.AdminResult

	// Absent: noop, 200, both for real and dry runs, so a retry is safe.
	for _, p := range []string{path, path + "&dry_run=1"} {
		res = api.AdminResult{}
		e.call(http.MethodDelete, p, nil, http.StatusOK, &res)
		if res.Effect != api.EffectNoop || res.Record != nil {
			t.Errorf("DELETE %s of an absent record = %+v, want noop", p, res)
		}
	}

	tok := e.acquire("s", "k", "fp")
	e.completeWith("s", "k", tok, api.StoredResponse{Status: 200, Body: []byte("secret")})

	res = api.AdminResult{}
	e.call(http.MethodDelete, path+"&dry_run=1", nil, http.StatusOK, &res)
	if res.Effect != api.EffectWouldDelete || res.Record == nil || res.Record.State != api.StateCompleted || res.Record.Response != nil {
		t.Errorf("dry run = %+v, want would_delete with the record, no body", res)
	}
	if r := e.reserve("s", "k", "fp"); r.Outcome != api.Completed {
		t.Fatalf("after a dry run the record changed: reserve = %+v", r)
	}

	res = api.AdminResult{}
	e.call(http.MethodDelete, path, nil, http.StatusOK, &res)
	if res.Effect != api.EffectDeleted || res.Record == nil || res.Record.Status != 200 || res.Record.Response != nil {
		t.Errorf("delete = %+v, want deleted with the record before, no body", res)
	}
	resp, body := e.do(http.MethodGet, path, nil)
	problemOf(t, resp, body, http.StatusNotFound)
	e.acquire("s", "k", "other fingerprint") // the key is free again

	res = api.AdminResult{}
	e.call(http.MethodDelete, path, nil, http.StatusOK, &res)
	if res.Effect != api.EffectDeleted || res.Record.State != api.StateInProgress {
		t.Errorf("delete of an in-progress record = %+v", res)
	}
	res = api.AdminResult{}
	e.call(http.MethodDelete, path, nil, http.StatusOK, &res)
	if res.Effect != api.EffectNoop {
		t.Errorf("second delete = %+v, want noop", res)
	}
}

func TestAdminRelease(t *testing.T) {
	e := newEnv(t)
	path := api.PathAdminRelease + query("s", "k")
	var res api.AdminResult

	for _, p := range []string{path, path + "&dry_run=1"} {
		res = api.AdminResult{}
		e.call(http.MethodPost, p, nil, http.StatusOK, &res)
		if res.Effect != api.EffectNoop {
			t.Errorf("POST %s of an absent record = %+v, want noop", p, res)
		}
	}

	tok := e.acquire("s", "k", "fp")
	res = api.AdminResult{}
	e.call(http.MethodPost, path+"&dry_run=true", nil, http.StatusOK, &res)
	if res.Effect != api.EffectWouldRelease || res.Record == nil || res.Record.State != api.StateInProgress {
		t.Errorf("dry run = %+v, want would_release with the record", res)
	}
	if r := e.reserve("s", "k", "fp"); r.Outcome != api.InProgress {
		t.Fatalf("after a dry run reserve = %+v, want still in_progress", r)
	}

	res = api.AdminResult{}
	e.call(http.MethodPost, path, nil, http.StatusOK, &res)
	if res.Effect != api.EffectReleased || res.Record == nil || res.Record.State != api.StateInProgress {
		t.Errorf("release = %+v, want released with the record before", res)
	}
	// The holder's token is stale now; a retry executes.
	resp, body := e.do(http.MethodPost, api.PathComplete, api.CompleteRequest{Scope: "s", Key: "k", Token: tok, Response: api.StoredResponse{Status: 200}})
	problemOf(t, resp, body, http.StatusConflict)
	tok2 := e.acquire("s", "k", "fp")

	// A completed record is refused, dry run or not, and stays.
	e.completeWith("s", "k", tok2, api.StoredResponse{Status: 200})
	for _, p := range []string{path, path + "&dry_run=1"} {
		resp, body = e.do(http.MethodPost, p, nil)
		if pr := problemOf(t, resp, body, http.StatusConflict); pr.Type != "urn:idemgate:problem:not-in-progress" {
			t.Errorf("POST %s of a completed record: problem %+v", p, pr)
		}
	}
	if r := e.reserve("s", "k", "fp"); r.Outcome != api.Completed {
		t.Errorf("after a refused release reserve = %+v, want completed", r)
	}
}
