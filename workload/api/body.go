package api

import (
	"bytes"
	"encoding/json"
	"io"
)

// Body is v as a JSON request body; nil for no body.
func Body(v any) (io.Reader, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}
