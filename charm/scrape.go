package charm

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/gruyaume/goops"

	"github.com/calico-lb/calico-lb/charm/cos"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// MetricsEndpoint is the prometheus_scrape relation.
const MetricsEndpoint = "metrics-endpoint"

// Job names are fixed: Prometheus keys series by them, so they must not
// change when the leader does.
const (
	controllerJob = "calico-lb-controller"
	speakersJob   = "calico-lb-speakers"
)

// scrapeJob is the subset of Prometheus' scrape_config that the
// prometheus_scrape interface passes on.
type scrapeJob struct {
	JobName       string         `json:"job_name"`
	MetricsPath   string         `json:"metrics_path"`
	StaticConfigs []staticConfig `json:"static_configs"`
}

type staticConfig struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// scrapeJobs is what Prometheus should scrape: every unit's controller
// ("*" stands for each unit's address) and, when speakers run, each
// speaker on its node, labelled with the node's name.
func scrapeJobs(speakers []api.SpeakerView) []scrapeJob {
	_, port, _ := net.SplitHostPort(config.DefaultMetricsAddress)
	jobs := []scrapeJob{{JobName: controllerJob, MetricsPath: "/metrics",
		StaticConfigs: []staticConfig{{Targets: []string{"*:" + port}}}}}
	var sc []staticConfig
	for _, sp := range speakers {
		if sp.Address == "" {
			continue
		}
		sc = append(sc, staticConfig{Targets: []string{net.JoinHostPort(sp.Address, strconv.Itoa(config.DefaultSpeakerPort))},
			Labels: map[string]string{"node": sp.Node}})
	}
	slices.SortFunc(sc, func(a, b staticConfig) int { return strings.Compare(a.Labels["node"], b.Labels["node"]) })
	if len(sc) > 0 {
		jobs = append(jobs, scrapeJob{JobName: speakersJob, MetricsPath: "/metrics", StaticConfigs: sc})
	}
	return jobs
}

// publishScrape fills the metrics-endpoint relations: each unit its
// address, the leader the jobs and the Juju topology. The speakers move
// with the DaemonSet, so the jobs are refreshed on every hook, and
// update-status catches what changed in between. If the workload cannot
// say where its speakers are, jobs already published stay as they are.
func (c *Charm) publishScrape() error {
	env := goops.ReadEnv()
	addr := ""
	if n, err := c.Network(MetricsEndpoint); err != nil {
		goops.LogWarningf("metrics-endpoint: no address for this unit: %v", err)
	} else {
		addr = bindAddress(n)
	}
	var speakers api.Speakers
	spErr := error(nil)
	if c.facts.leader {
		// The pods' addresses only: asking every speaker for its report
		// would send each a token on every hook.
		spErr = c.get("/v1/speakers?reports=none", &speakers)
	}
	app, _, _ := strings.Cut(env.UnitName, "/")
	meta, _ := json.Marshal(map[string]string{"model": env.ModelName, "model_uuid": env.ModelUUID,
		"application": app, "unit": env.UnitName, "charm_name": "calico-lb"})
	jobs, _ := json.Marshal(scrapeJobs(speakers.Speakers))
	rules, err := alertRules()
	if err != nil {
		return err
	}
	for _, id := range c.facts.metricsRels {
		if addr != "" {
			if err := goops.SetUnitRelationData(id, map[string]string{
				"prometheus_scrape_unit_address": addr, "prometheus_scrape_unit_name": env.UnitName}); err != nil {
				return fmt.Errorf("metrics-endpoint %s: %w", id, err)
			}
		}
		if !c.facts.leader {
			continue
		}
		if spErr != nil {
			if have, err := goops.GetAppRelationData(id, env.UnitName); err == nil && have["scrape_jobs"] != "" {
				goops.LogWarningf("metrics-endpoint: scrape jobs kept: the workload did not list its speakers: %v", spErr)
				continue
			}
		}
		if err := goops.SetAppRelationData(id, map[string]string{"scrape_metadata": string(meta), "scrape_jobs": string(jobs), cos.AlertRulesKey: rules}); err != nil {
			return fmt.Errorf("metrics-endpoint %s: %w", id, err)
		}
	}
	return nil
}

// bindAddress is the unit's first bind address, which Prometheus reaches.
func bindAddress(n *goops.Network) string {
	for _, b := range n.BindAddresses {
		for _, a := range b.Addresses {
			if a.Value != "" {
				return a.Value
			}
		}
	}
	if len(n.IngressAddresses) > 0 {
		return n.IngressAddresses[0]
	}
	return ""
}
