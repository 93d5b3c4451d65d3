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
	return m.c.setPeerData(map[string]string{keyOurs: string(b)})
}

// Ready: the peer relation is there from the first hooks after install,
// and not in install itself.
func (m peerMemory) Ready() error {
	if m.c.peerApp().id == "" {
		return fmt.Errorf("the %s relation is not there yet (it is from the hooks after install), and what calico-lb adds must be kept there to be removed later", PeerEndpoint)
	}
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

// setPeerData writes m into the peer relation's application data.
func (c *Charm) setPeerData(m map[string]string) error {
	p := c.peerApp()
	if p.id == "" {
		return fmt.Errorf("no %s relation yet", PeerEndpoint)
	}
	if err := goops.SetAppRelationData(p.id, m); err != nil {
		return fmt.Errorf("relation-set on %s: %w", PeerEndpoint, err)
	}
	for k, v := range m {
		p.data[k] = v
	}
	return nil
}
