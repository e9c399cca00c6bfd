//! What the control plane's own controllers would do on writes: CRDs registering their
//! types, an HPA's replica count, and the Deployment status stand-in (until a pod runner
//! takes over).

use serde_json::{Value, json};

use super::*;

impl Store {
    /// What other controllers would do after a write: CRDs become served and Established;
    /// Deployments get a status as if their pods were (or were not) ready, with the
    /// replicas a HorizontalPodAutoscaler targeting them asks for at least.
    pub(super) fn after_write(&mut self, t: &ResourceType, object: &Value) {
        if t.group == "apiextensions.k8s.io" && t.plural == "customresourcedefinitions" {
            self.register_crd(t, object);
        }
        if t.group == "apps" && t.plural == "deployments" {
            self.simulate_deployment(t, object);
        }
        if t.group == "autoscaling" && t.plural == "horizontalpodautoscalers" {
            let target = &object["spec"]["scaleTargetRef"];
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            if target["kind"] == "Deployment"
                && let (Ok(deployments), Some(name)) = (
                    self.resolve("apps", "v1", "deployments"),
                    target["name"].as_str(),
                )
                && let Ok(deployment) = self.get(&deployments, namespace, name)
            {
                self.simulate_deployment(&deployments, &deployment);
            }
        }
    }

    /// `minReplicas` of an autoscaler scaling this Deployment (the HPA stand-in).
    pub(super) fn autoscaled_replicas(&self, namespace: &str, name: &str) -> Option<i64> {
        self.objects
            .iter()
            .filter(|((g, p, ns, _), _)| {
                g == "autoscaling" && p == "horizontalpodautoscalers" && ns == namespace
            })
            .map(|(_, hpa)| &hpa["spec"])
            .find(|spec| {
                spec["scaleTargetRef"]["kind"] == "Deployment"
                    && spec["scaleTargetRef"]["name"] == name
            })
            .map(|spec| spec["minReplicas"].as_i64().unwrap_or(1))
    }

    pub(super) fn register_crd(&mut self, t: &ResourceType, crd: &Value) {
        let Some(served) = ResourceType::from_crd(crd) else {
            return;
        };
        self.types
            .retain(|x| !(x.group == served.group && x.plural == served.plural));
        self.types.push(served);
        let established = json!({
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now_rfc3339()},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()},
            ],
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": crd["spec"]["versions"].as_array().map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
        });
        if crd["status"]["acceptedNames"] == crd["spec"]["names"]
            && crd["status"]["conditions"].is_array()
        {
            return;
        }
        let mut updated = crd.clone();
        updated["status"] = established;
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let _ = self.commit(
            t,
            "",
            &name,
            crd.clone(),
            updated,
            "apiextensions-apiserver",
            "update",
        );
    }

    pub(super) fn unregister_crd(&mut self, crd: &Value) {
        let Some(served) = ResourceType::from_crd(crd) else {
            return;
        };
        let keys: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|(g, p, _, _)| *g == served.group && *p == served.plural)
            .cloned()
            .collect();
        for (_, _, ns, name) in keys {
            if let Ok(object) = self.get(&served, &ns, &name) {
                self.rv += 1;
                self.remove(&served, &ns, &name, object, None);
            }
        }
        self.types
            .retain(|x| !(x.group == served.group && x.plural == served.plural));
    }

    /// Sets whether simulated Deployments report their pods ready (default true), and
    /// updates every existing Deployment's status accordingly.
    pub fn set_deployments_ready(&mut self, ready: bool) {
        self.deployments_ready = ready;
        let Ok(t) = self.resolve("apps", "v1", "deployments") else {
            return;
        };
        let all: Vec<Value> = self
            .objects
            .iter()
            .filter(|((g, p, _, _), _)| g == "apps" && p == "deployments")
            .map(|(_, o)| o.clone())
            .collect();
        for deployment in all {
            self.simulate_deployment(&t, &deployment);
        }
    }

    /// Hands Deployment status to a pod runner: the stand-in stops writing it.
    pub fn stop_simulating_deployments(&mut self) {
        self.deployments_simulated = false;
    }

    pub(super) fn simulate_deployment(&mut self, t: &ResourceType, deployment: &Value) {
        if !self.deployments_simulated || deployment["metadata"]["deletionTimestamp"].is_string() {
            return;
        }
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let replicas = deployment["spec"]["replicas"]
            .as_i64()
            .or_else(|| self.autoscaled_replicas(namespace, name))
            .unwrap_or(1);
        let ready = if self.deployments_ready { replicas } else { 0 };
        let status = json!({
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [{
                "type": "Available",
                "status": if ready >= replicas { "True" } else { "False" },
                "reason": if ready >= replicas { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            }],
        });
        if deployment["status"] == status {
            return;
        }
        let mut updated = deployment.clone();
        updated["status"] = status;
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = deployment["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let _ = self.commit(
            t,
            &namespace,
            &name,
            deployment.clone(),
            updated,
            "kube-controller-manager",
            "update",
        );
    }
}
