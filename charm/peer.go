package charm

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gruyaume/goops"
)

// PeerEndpoint is the peer relation, whose application data holds what
// the leader decided about Calico, for the other units and later hooks.
const PeerEndpoint = "calico-lb-peers"

// peerMemory keeps the CIDRs calico-lb added to calico's option in the
// peer relation, where every unit (and the next leader) finds them.
type peerMemory struct{ c *Charm }

func (m peerMemory) Added() []string { return m.c.ours() }

func (m peerMemory) Remember(cidrs []string) error {
	b, _ := json.Marshal(cidrs)
	m.c.setPeerData(map[string]string{keyOurs: string(b)})
	return nil
}

// ours is the CIDRs calico-lb put into calico's option before.
func (c *Charm) ours() []string {
	var out []string
	if v, ok := c.peerData(keyOurs); ok {
		_ = json.Unmarshal([]byte(v), &out)
	}
	return out
}

// relationIDs is relation-ids. Juju prints [] for an endpoint without
// relations; goopstest prints nothing when the unit has relations on other
// endpoints, which goops.GetRelationIDs cannot parse, so empty means none.
func relationIDs(endpoint string) ([]string, error) {
	out, err := goops.GetCommandRunner().Run("relation-ids", endpoint, "--format=json")
	if err != nil {
		return nil, fmt.Errorf("relation-ids %s: %w", endpoint, err)
	}
	var ids []string
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &ids); err != nil {
		return nil, fmt.Errorf("relation-ids %s: %w", endpoint, err)
	}
	return ids, nil
}

// peerBag is the peer relation's application data, as read this hook.
type peerBag struct {
	id   string // "" without the relation
	data map[string]string
}

func (c *Charm) peerApp() *peerBag {
	if c.peer != nil {
		return c.peer
	}
	c.peer = &peerBag{data: map[string]string{}}
	ids, err := relationIDs(PeerEndpoint)
	if err != nil || len(ids) == 0 {
		return c.peer
	}
	c.peer.id = ids[0]
	if data, err := goops.GetAppRelationData(c.peer.id, goops.ReadEnv().UnitName); err == nil {
		c.peer.data = data
	}
	return c.peer
}

func (c *Charm) peerData(key string) (string, bool) {
	v := c.peerApp().data[key]
	return v, v != ""
}

func (c *Charm) setPeerData(m map[string]string) {
	p := c.peerApp()
	if p.id == "" {
		goops.LogWarningf("no %s relation yet: the Calico link's decision is not kept for other units", PeerEndpoint)
		return
	}
	if err := goops.SetAppRelationData(p.id, m); err != nil {
		goops.LogWarningf("keep the Calico link's decision: %v", err)
		return
	}
	for k, v := range m {
		p.data[k] = v
	}
}
