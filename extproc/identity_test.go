package extproc

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestIdentityOnlyFromOneVerifiedClaimsHeader(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	exp := time.Now().Add(time.Hour).Unix()
	good := enc(`{"sub":"a","groups":["analysts"],"exp":` + itoa(exp) + `}`)
	rules := tokenRules{groupsKey: "groups", skew: time.Minute}
	if id, err := identityFrom([]string{good}, rules); err != nil || id.Subject != "a" || strings.Join(id.Groups, ",") != "analysts" {
		t.Fatalf("one verified header: %+v %v", id, err)
	}
	for name, values := range map[string][]string{
		"none": nil,
		"two (a spoof kept beside the verified one)": {enc(`{"sub":"a","groups":["admins"],"exp":` + itoa(exp) + `}`), good},
		"not base64url":     {"%%%"},
		"not a JSON object": {enc(`["a"]`)},
	} {
		if _, err := identityFrom(values, rules); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
