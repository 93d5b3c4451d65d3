package access

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
)

func jwt(payload string) string {
	return "e30." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
}

func TestTokenFreshness(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name, token, uid string
		fresh            bool
	}{
		{"young", jwt(fmt.Sprintf(`{"iat":%d,"exp":%d,"kubernetes.io":{"serviceaccount":{"uid":"u1"}}}`, now.Unix()-100, now.Unix()+3500)), "u1", true},
		{"any account", jwt(fmt.Sprintf(`{"iat":%d,"exp":%d}`, now.Unix()-100, now.Unix()+3500)), "", true},
		{"past half-life", jwt(fmt.Sprintf(`{"iat":%d,"exp":%d}`, now.Unix()-1900, now.Unix()+1700)), "", false},
		{"another account", jwt(fmt.Sprintf(`{"iat":%d,"exp":%d,"kubernetes.io":{"serviceaccount":{"uid":"u0"}}}`, now.Unix()-100, now.Unix()+3500)), "u1", false},
		{"no lifetime", jwt(`{}`), "", false},
		{"garbage", "not a token", "", false},
		{"bad base64", "a.!!!.c", "", false},
	}
	for _, c := range cases {
		f := TokenFile{Path: filepath.Join(dir, c.name)}
		if err := os.WriteFile(f.Path, []byte(c.token), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := f.Fresh(now, c.uid); got != c.fresh {
			t.Errorf("%s: fresh = %v, want %v", c.name, got, c.fresh)
		}
	}
	if (TokenFile{Path: filepath.Join(dir, "missing")}).Fresh(now, "") {
		t.Error("a missing file is fresh")
	}
}

// The receipt says when `calico-lb access` is next due: the recheck, or
// the token's half-life when that comes first; always while the failover
// test's powers are bound. A failed run clears it.
func TestReceipt(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	young := TokenFile{Path: filepath.Join(dir, "young")}
	if err := os.WriteFile(young.Path, []byte(jwt(fmt.Sprintf(`{"iat":%d,"exp":%d}`, now.Unix()-60, now.Unix()+3540))), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := Receipt(now, young, false); !r.Next.Equal(now.Add(Recheck)) || r.Due(now) || r.Due(now.Add(Recheck-time.Second)) || !r.Due(now.Add(Recheck)) {
		t.Fatalf("young token: %+v", r)
	}
	// Half its life is gone in 5 minutes: that comes before the recheck.
	aging := TokenFile{Path: filepath.Join(dir, "aging")}
	if err := os.WriteFile(aging.Path, []byte(jwt(fmt.Sprintf(`{"iat":%d,"exp":%d}`, now.Unix()-1500, now.Unix()+2100))), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := Receipt(now, aging, false); !r.Next.Equal(now.Add(5*time.Minute)) || !r.Due(now.Add(5*time.Minute)) {
		t.Fatalf("aging token: %+v", r)
	}
	if r := Receipt(now, young, true); !r.Due(now) {
		t.Fatalf("bound failover powers are not due: %+v", r)
	}
	if r := (api.AccessReceipt{}); !r.Due(now) {
		t.Fatal("an empty receipt is not due")
	}

	path := filepath.Join(dir, "sub", "receipt.json")
	want := Receipt(now, young, false)
	if err := WriteReceipt(path, want); err != nil {
		t.Fatal(err)
	}
	var got api.AccessReceipt
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &got) != nil || !got.Next.Equal(want.Next) {
		t.Fatalf("read back %+v (%v)", got, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if err := ClearReceipt(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("cleared receipt: %v", err)
	}
	if err := ClearReceipt(path); err != nil {
		t.Fatalf("clearing no receipt: %v", err)
	}
}
