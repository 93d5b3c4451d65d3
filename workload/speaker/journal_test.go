package speaker

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/failovertest/speakerhook"
)

func TestJournalAPI(t *testing.T) {
	sp := NewSpeaker(Options{NodeName: "node1", Callers: tokenIs("s3cret"), Test: speakerhook.New(speakerhook.Options{NodeName: "node1"})})
	srv := httptest.NewServer(sp.Handler())
	defer srv.Close()
	get := func(query, token string) (*http.Response, api.SpeakerJournal) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/journal"+query, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var j api.SpeakerJournal
		_ = json.NewDecoder(resp.Body).Decode(&j)
		return resp, j
	}
	if resp, _ := get("", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", resp.StatusCode)
	}
	if resp, _ := get("?since=yesterday", "s3cret"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad since: %d", resp.StatusCode)
	}
	resp, j := get("?ip=10.0.0.1&since="+time.Now().Add(-time.Minute).Format(time.RFC3339Nano), "s3cret")
	if resp.StatusCode != http.StatusOK || j.Node != "node1" || len(j.Events) != 1 || j.Events[0].Kind != "started" {
		t.Fatalf("journal: %d %+v", resp.StatusCode, j)
	}
}
