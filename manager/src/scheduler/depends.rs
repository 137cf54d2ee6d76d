//! `depends_on`: a service's tasks wait for a node until every service it depends on
//! meets its condition (started, healthy, or completed), judged from the store on every
//! pass, so the rule holds at deploy and after a whole-cluster restart alike.

use shoal_proto::{DependencyCondition, Service, ServiceMode, TaskState};

use crate::store::ReadTx;

/// Why `service`'s tasks must wait now, if they must.
pub fn waiting_for(r: &ReadTx<'_>, service: &Service) -> Option<String> {
    let spec = service.spec.as_ref()?;
    for dependency in &spec.depends_on {
        let condition = DependencyCondition::try_from(dependency.condition)
            .unwrap_or(DependencyCondition::Started);
        let Some(other) = r.services().find(|s| s.name() == dependency.service) else {
            return Some(format!(
                "waiting for service {}, which does not exist",
                dependency.service
            ));
        };
        if !met(r, other, condition) {
            let what = match condition {
                DependencyCondition::Started => "to start",
                DependencyCondition::Healthy => "to be healthy",
                DependencyCondition::Completed => "to complete",
            };
            return Some(format!("waiting for service {} {what}", dependency.service));
        }
    }
    None
}

/// Whether `service` meets `condition`: it has tasks of its current version (a job: of its
/// current run), and every one wanted meets it.
fn met(r: &ReadTx<'_>, service: &Service, condition: DependencyCondition) -> bool {
    let job = matches!(
        service.mode(),
        ServiceMode::ReplicatedJob | ServiceMode::GlobalJob
    );
    let iteration = service.job_status.as_ref().map_or(0, |j| j.iteration);
    let current: Vec<_> = r
        .tasks_of_service(&service.id)
        .filter(|t| {
            if job {
                t.job_iteration == iteration
            } else {
                t.spec_version == service.spec_version && t.desired() <= TaskState::Running
            }
        })
        .collect();
    let wanted = match service.mode() {
        ServiceMode::Replicated | ServiceMode::ReplicatedJob => service
            .spec
            .as_ref()
            .map_or(0, |s| usize::try_from(s.replicas).unwrap_or(usize::MAX)),
        // Global: as many as it has now (at least one).
        _ => current.len().max(1),
    };
    let meeting = current
        .iter()
        .filter(|t| match condition {
            DependencyCondition::Started => {
                matches!(t.state(), TaskState::Starting | TaskState::Running)
                    || (job && t.state() == TaskState::Complete)
            }
            DependencyCondition::Healthy => t.state() == TaskState::Running,
            DependencyCondition::Completed => t.state() == TaskState::Complete,
        })
        .count();
    meeting >= wanted.max(1)
}

#[cfg(test)]
mod tests {
    use shoal_proto::{Dependency, Task, TaskStatus};

    use super::*;
    use crate::store::{Object, Store};
    use crate::testutil::{put, service};

    fn depending(on: &str, condition: DependencyCondition) -> Service {
        let mut web = service("web", 1);
        if let Some(spec) = web.spec.as_mut() {
            spec.depends_on = vec![Dependency {
                service: on.into(),
                condition: condition as i32,
            }];
        }
        web
    }

    fn task(id: &str, service: &Service, state: TaskState) -> Task {
        Task {
            id: id.into(),
            service_id: service.id.clone(),
            spec_version: service.spec_version,
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_service_waits_until_its_dependency_meets_the_condition() {
        let store = Store::in_memory();
        let db = service("db", 2);
        let web = depending("db-name", DependencyCondition::Healthy);
        put(
            &store,
            vec![Object::Service(db.clone()), Object::Service(web.clone())],
        )
        .await;
        let why = |store: &Store| store.view(|r| waiting_for(r, &web));
        assert_eq!(
            why(&store).as_deref(),
            Some("waiting for service db-name to be healthy")
        );
        put(
            &store,
            vec![
                Object::Task(task("d1", &db, TaskState::Running)),
                Object::Task(task("d2", &db, TaskState::Starting)),
            ],
        )
        .await;
        assert!(why(&store).is_some(), "one of two is not healthy yet");
        let started = depending("db-name", DependencyCondition::Started);
        assert_eq!(store.view(|r| waiting_for(r, &started)), None);
        put(
            &store,
            vec![Object::Task(task("d3", &db, TaskState::Running))],
        )
        .await;
        assert_eq!(why(&store), None, "two running now");
        let missing = depending("nope", DependencyCondition::Started);
        assert!(store
            .view(|r| waiting_for(r, &missing))
            .is_some_and(|w| w.contains("does not exist")));
    }
}
