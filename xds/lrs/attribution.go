package lrs

import "github.com/sluice-dev/sluice/router"

// AttributeCluster is the [Attribution] of Sluice's own clusters: the cluster
// name (router.ClusterName) gives namespace, service and track, and the
// locality's sub-zone (router.LocalitySubZone) the track and revision of the
// endpoints that served the load. A report for a locality whose sub-zone
// Sluice did not write counts for the cluster's track with no revision, so it
// never counts for a canary revision; one on the sticky cluster without a
// track in its sub-zone cannot be attributed and is refused.
func AttributeCluster(cluster, subZone string) (Key, bool) {
	id, err := router.ParseClusterName(cluster)
	if err != nil {
		return Key{}, false
	}
	k := Key{Namespace: id.Namespace, Service: id.Service, Track: string(id.Track)}
	if track, revision, err := router.ParseLocalitySubZone(subZone); err == nil {
		k.Track, k.Revision = string(track), revision
	}
	if k.Track == string(router.TrackSticky) {
		return Key{}, false
	}
	return k, true
}
